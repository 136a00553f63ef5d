"""Your own model, data, loss, metric and trick, by import path, through every tool: a package
outside trickbag (tests/byo/usrpkg) runs in train, lr-find, ablate with two worker processes,
and search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from subproc import subprocess_env

BYO = Path(__file__).parents[1] / "byo"
CONFIG = {
    "plugins": ["usrpkg.tricks"],
    "data": {"name": "usrpkg.data:load", "options": {"n_train": 240, "classes": 3}, "batch_size": 40},
    "model": {"name": "usrpkg.models:build_net", "hidden": 12},
    "loss": {"name": "usrpkg.losses:PenalisedCE", "beta": 0.05},
    "metrics": {"p_true": "usrpkg.metrics:true_class_prob",
                "p_true_hot": {"name": "usrpkg.metrics:true_class_prob", "temperature": 0.5}},
    "optimizer": {"name": "adamw", "lr": 0.02},
    "tricks": ["shrink_weights"],
    "train": {"epochs": 3, "threads": 1, "progress": False},
}


@pytest.fixture
def on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BYO))
    yield
    from trickbag import catalog

    catalog.unregister("shrink_weights")  # and forget the package, so the next import registers again
    for name in [m for m in sys.modules if m == "usrpkg" or m.startswith("usrpkg.")]:
        del sys.modules[name]


def test_a_config_of_import_paths_builds_and_trains_in_process(on_path):
    from trickbag.train.build import build_run
    from trickbag.train.config import load_config

    import usrpkg.losses

    cfg = load_config(CONFIG)
    run = build_run(cfg)
    assert type(run.trainer.model).__name__ == "Sequential" and run.trainer.model[1].out_features == 12
    calls = usrpkg.losses.PenalisedCE.calls
    results = run.fit()
    assert usrpkg.losses.PenalisedCE.calls > calls  # the user's loss trained the model
    final = results["final"]
    assert final["val_acc"] > 0.8 and 0 < final["val_p_true"] < 1
    assert final["val_p_true_hot"] > final["val_p_true"]  # the metric's keyword reached it
    assert "val_p_true" in run.metric_names()
    assert any(type(c).__name__ == "ShrinkWeights" for c in run.trainer.callbacks)


@pytest.mark.parametrize("section, value, match", [
    ("model", {"name": "usrpkg.models:build_nett"}, r"module 'usrpkg.models' has no 'build_nett'"),
    ("model", {"name": "usrpkg.modelz:build_net"}, r"cannot import module 'usrpkg.modelz'"),
    ("model", {"name": "usrpkg.models:build_net", "hiden": 3}, r"unknown parameter 'hiden'; build_net takes"),
    ("loss", {"name": "usrpkg.losses:Nope"}, r"has no 'Nope'"),
    ("metrics", {"p": "not_a_path"}, r"metrics.p must be 'package.module:function'"),
])
def test_bad_import_paths_name_what_is_wrong(on_path, section, value, match):
    from trickbag.train.build import build_run
    from trickbag.train.config import load_config

    with pytest.raises(ValueError, match=match):
        build_run(load_config({**CONFIG, section: value}))


def _cli(args, cwd):
    env = subprocess_env()
    env["PYTHONPATH"] = str(BYO) + os.pathsep + env["PYTHONPATH"]
    return subprocess.run([sys.executable, "-m", "trickbag", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_every_tool_runs_the_users_package(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    done = _cli(["train", "--config", str(config), "--out", str(tmp_path / "train")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "train" / "results.json").read_text())
    assert "test_p_true" in results["test"]
    result_line = next(line for line in done.stdout.splitlines() if line.startswith("result: "))
    assert f"val_p_true {results['final']['val_p_true']:.4f}" in result_line  # the custom metric is printed
    assert f"test_p_true {results['test']['test_p_true']:.4f}" in result_line

    done = _cli(["lr-find", "--config", str(config), "--out", str(tmp_path / "lr"), "--steps", "20"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    done = _cli(["ablate", "--config", str(config), "--tricks", "shrink_weights:factor=0.99", "--seeds", "2",
                 "--workers", "2", "--out", str(tmp_path / "abl")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "shrink_weights" in (tmp_path / "abl" / "report.md").read_text()

    space = tmp_path / "space.yaml"
    space.write_text("lr: loguniform(1e-3, 0.1)\nshrink_weights.factor: uniform(0.99, 1.0)\n")
    done = _cli(["search", "--config", str(config), "--space", str(space), "--trials", "3", "--stages", "coarse",
                 "--out", str(tmp_path / "search")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "search" / "best.yaml").exists()


def test_model_surgery_tricks_work_on_the_users_model(on_path):
    """blurpool, group_norm and zero_init_residual change the user's network as they change
    torchvision's."""
    from trickbag.data import synthetic
    from trickbag.layers import BlurPool2d
    from trickbag.train.build import build_run
    from trickbag.train.config import load_config

    splits = synthetic(num_train=64, num_test=16, shape=(3, 8, 8), num_classes=3)
    cfg = load_config({"data": {"name": "synthetic", "batch_size": 16, "val_fraction": 0},
                       "model": {"name": "usrpkg.models:build_cnn"},
                       "tricks": ["blurpool", "group_norm:groups=4", "zero_init_residual"],
                       "train": {"steps": 1, "epochs": None, "progress": False}})
    model = build_run(cfg, splits=splits).trainer.model
    modules = list(model.modules())
    assert any(isinstance(m, BlurPool2d) for m in modules)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in modules)
    block = model[3]
    assert isinstance(block.last_norm, torch.nn.GroupNorm) and float(block.last_norm.weight.abs().sum()) == 0


def test_dict_batches_with_the_keys_named_in_the_config(on_path):
    """Hugging Face-style data: items are dicts; data.batch_keys names inputs and targets, for
    the device loader (read into tensors), torch's DataLoader and a hand-made list of batches."""
    from trickbag.data import ArrayDataset
    from trickbag.train import Trainer
    from trickbag.train.build import build_run
    from trickbag.train.config import load_config

    base = {**CONFIG, "data": {"name": "usrpkg.data:load_dicts", "batch_size": 40, "batch_keys": ["features", "target"]},
            "tricks": [], "metrics": None}
    for loader in ("device", "torch"):
        cfg = load_config({**base, "data": {**base["data"], "loader": loader}})
        results = build_run(cfg).fit()
        assert results["final"]["val_acc"] > 0.8, loader
    with pytest.raises(ValueError, match=r"items have keys \['features', 'id', 'target'\], not \['input', 'label'\]"):
        build_run(load_config({**base, "data": {**base["data"], "batch_keys": ["input", "label"]}}))
    data = ArrayDataset(torch.randn(64, 6), torch.arange(64) % 2)
    batches = [{"pixel_values": data.inputs[i:i + 16], "labels": data.targets[i:i + 16]} for i in range(0, 64, 16)]
    t = Trainer(torch.nn.Linear(6, 2), batches, val_data=batches, epochs=1, progress=False,
                batch_keys=("pixel_values", "labels"))
    assert "val_acc" in t.fit()[-1]
    with pytest.raises(ValueError, match="name its inputs and targets"):
        Trainer(torch.nn.Linear(6, 2), batches, epochs=1, progress=False).fit()
    from trickbag.data import TorchLoader
    from usrpkg.data import DictBlobs

    loader = TorchLoader(DictBlobs(48, 3, 0), 16, batch_keys=("features", "target"))  # collated dict batches
    x, y = next(iter(loader))
    assert x.shape == (16, 6) and y.dtype == torch.int64
