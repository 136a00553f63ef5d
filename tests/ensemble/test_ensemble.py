"""Ensembles: combining rules by hand, predictions from modules and from run directories, and
the `trickbag ensemble` command."""

from __future__ import annotations

import json

import pytest
import torch

from trickbag.cli import main
from trickbag.ensemble.members import run_splits
from trickbag.ensemble import (
    bootstrap_interval,
    combine_logits,
    evaluate,
    expected_calibration_error,
    load_member,
    predict,
)


def test_combine_by_hand():
    z1, z2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    e = torch.e
    probs = combine_logits([z1, z2], "probs")
    expected = (torch.tensor([[e, 1.0]]) / (e + 1) + torch.tensor([[1.0, e**3]]) / (1 + e**3)) / 2
    assert torch.allclose(probs, expected.double())
    logits = combine_logits([z1, z2], "logits")
    assert torch.allclose(logits, torch.tensor([[0.5, 1.5]]).softmax(1).double())
    with pytest.raises(ValueError, match="unknown combine 'mean'"):
        combine_logits([z1], "mean")
    with pytest.raises(ValueError, match="members disagree on the output shape"):
        combine_logits([z1, torch.zeros(1, 3)])


def test_predict_modules_and_evaluate_rows(gen):
    torch.manual_seed(0)
    nets = [torch.nn.Linear(5, 3) for _ in range(3)]
    x, y = torch.randn(40, 5, generator=gen), torch.randint(0, 3, (40,), generator=gen)
    out = predict(nets, (x, y), combine="logits", batch_size=7)
    mean_logits = torch.stack([n(x) for n in nets]).mean(0)
    assert torch.allclose(out.probs.float(), mean_logits.softmax(1), atol=1e-6)
    assert torch.equal(out.targets, y) and len(out.logits) == 3
    rows = evaluate(out, bins=5, intervals=50)
    assert [r["name"] for r in rows][-1] == "ensemble (3, logits)"
    assert rows[0]["ece"] == pytest.approx(expected_calibration_error(nets[0](x).softmax(1), y, 5).item())
    lo, hi = rows[-1]["acc_ci"]
    assert lo <= rows[-1]["acc"] <= hi
    assert bootstrap_interval(out.probs, y, lambda p, t: torch.tensor(1.0), samples=10) == (1.0, 1.0)
    with pytest.raises(ValueError, match="an ensemble member is an nn.Module"):
        predict([3], x)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny trained runs on synthetic images; the third with snapshots."""
    from trickbag.train.config import load_config
    from trickbag.train.runs import start_run

    root = tmp_path_factory.mktemp("ens")
    raw = {"data": {"name": "synthetic", "options": {"num_train": 300, "num_test": 120, "shape": [1, 8, 8],
                                                     "num_classes": 3, "noise": 1.2},
                    "val_fraction": 0.2, "batch_size": 32},
           "model": {"name": "small_cnn", "width": 4}, "optimizer": {"name": "adamw", "lr": 0.01},
           "train": {"epochs": 3, "progress": False, "device": "cpu", "checkpoint_every_epochs": None}}
    dirs = []
    for seed in (1, 2):
        start_run(load_config(raw, [f"train.seed={seed}"]), root / f"m{seed}").fit()
        dirs.append(root / f"m{seed}")
    start_run(load_config({**raw, "tricks": [{"snapshot_ensemble": {"cycles": 2}}]}), root / "snap").fit()
    return dirs, root / "snap"


def test_members_from_run_directories_reproduce_the_runs(runs):
    dirs, snap = runs
    member = load_member(dirs[0])
    out = predict([dirs[0]], run_splits(member.config).test)
    saved = json.loads((dirs[0] / "results.json").read_text())["test"]["test_acc"]
    assert float((out.probs.argmax(1) == out.targets).double().mean()) == pytest.approx(saved, abs=1e-9)
    snaps = sorted((snap / "snapshots").glob("*.pt"))
    assert len(snaps) == 2 and load_member(snaps[0]).info["run_dir"] == str(snap)
    with pytest.raises(FileNotFoundError, match="holds no trained model"):
        load_member(snap / "snapshots")
    bare = snap.parent / "bare"
    bare.mkdir()
    torch.save({}, bare / "model.pt")
    with pytest.raises(FileNotFoundError, match="is not a run directory"):
        load_member(bare)


def test_cli_ensemble_prints_members_and_ensemble(runs, tmp_path, capsys):
    dirs, snap = runs
    out = tmp_path / "report"
    assert main(["ensemble", *map(str, dirs), "--calibrate", "--bins", "10", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ensemble (2, probs)" in text and "(T=" in text and "nll" in text
    assert text.splitlines()[0].startswith("model (scored on the test split)  ")  # which split the table scores
    result = json.loads((out / "ensemble.json").read_text())
    assert len(result["rows"]) == 6  # 2 members, the ensemble, each also temperature-scaled
    assert (out / "reliability.png").stat().st_size > 1000
    assert main(["ensemble", *map(str, sorted((snap / "snapshots").glob("*.pt"))), "--combine", "logits",
                 "--out", str(tmp_path / "snap")]) == 0
    assert "ensemble (2, logits)" in capsys.readouterr().out
    assert main(["ensemble", *map(str, dirs), "--data", "val", "--out", str(tmp_path / "val")]) == 0
    assert capsys.readouterr().out.startswith("model (scored on the val split)  ")
    assert main(["ensemble", str(dirs[0]), "--data", "val", "--calibrate"]) == 2
    assert "fits temperatures on the validation split" in capsys.readouterr().err
