"""`trickbag train` from the command line, a SIGKILL and --resume, and data parallelism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from subproc import subprocess_env
from trickbag.cli import main

TINY = {
    "data": {"name": "synthetic", "options": {"num_train": 600, "num_test": 100, "shape": [16], "num_classes": 3},
             "batch_size": 8},
    "model": {"name": "mlp", "hidden": [64, 64]},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "schedule": {"name": "cosine_decay"},
    "tricks": ["mixup:alpha=0.3", "ema:decay=0.99"],
    "train": {"epochs": 12, "threads": 1, "checkpoint_every_steps": 20, "checkpoint_every_epochs": None,
              "log_every": 20, "progress": False},
}


def write_config(tmp_path, cfg=TINY) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


env = subprocess_env


def test_train_writes_a_complete_run_directory(tmp_path, capsys):
    cfg = dict(TINY, train={**TINY["train"], "epochs": 2})
    out = tmp_path / "run"
    assert main(["train", "--config", str(write_config(tmp_path, cfg)), "--out", str(out), "train.seed=3"]) == 0
    printed = capsys.readouterr().out
    assert "run directory" in printed and "val_acc" in printed and "test_acc" in printed
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "meta.json", "metrics.jsonl", "results.json", "model.pt", "checkpoints"}
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["seed"] == 3 and saved["tricks"] == [{"mixup": {"alpha": 0.3}}, {"ema": {"decay": 0.99}}]
    meta = json.loads((out / "meta.json").read_text())
    assert {"trickbag", "git", "torch", "hardware", "seed", "effective"} <= set(meta)
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["test_acc"] > 0.5
    assert torch.load(out / "model.pt", weights_only=True)


def test_bad_config_fails_before_anything_is_written(tmp_path, capsys):
    bad = dict(TINY, tricks=["mixupp"])
    out = tmp_path / "run"
    assert main(["train", "--config", str(write_config(tmp_path, bad)), "--out", str(out)]) == 2
    assert "unknown trick 'mixupp'; did you mean 'mixup'" in capsys.readouterr().err
    assert not out.exists()
    out.mkdir()
    (out / "x").write_text("")
    assert main(["train", "--config", str(write_config(tmp_path)), "--out", str(out)]) == 2
    assert "is not empty; use --resume" in capsys.readouterr().err


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    config = write_config(tmp_path)
    full = tmp_path / "full"
    subprocess.run([sys.executable, "-m", "trickbag", "train", "--config", str(config), "--out", str(full)],
                   check=True, env=env(), capture_output=True, timeout=300)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "trickbag", "train", "--config", str(config), "--out", str(killed)],
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not last.exists():
        time.sleep(0.01)
    time.sleep(0.2)  # let it get further, mid-way between checkpoints
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "results.json").exists(), "the run finished before it was killed"
    step_at_kill = torch.load(last, weights_only=True)["counters"]["step"]
    total = json.loads((full / "results.json").read_text())["final"]["step"]
    assert 0 < step_at_kill < total
    resumed = subprocess.run([sys.executable, "-m", "trickbag", "train", "--resume", str(killed)], env=env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(full / "model.pt", weights_only=True)
    b = torch.load(killed / "model.pt", weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ra = json.loads((full / "results.json").read_text())
    rb = json.loads((killed / "results.json").read_text())
    assert ra["test"] == rb["test"]


DDP_SCRIPT = r"""
import os, sys, torch
from trickbag.train.config import load_config
from trickbag.train.build import build_run
cfg = load_config(sys.argv[1], ["train.progress=false", "train.device=cpu"])
run = build_run(cfg)
loader = run.trainer.train_data
run.fit()
from trickbag.train.distributed import shutdown
shutdown()
rank = int(os.environ["RANK"])
torch.save({"model": run.trainer.state.raw_model.state_dict(), "shard_size": len(loader.inputs) // loader.world_size,
            "first_batch": next(iter(type(loader)(run.splits.train, 8, rank=rank, world_size=2, shuffle=True, seed=0)))[1]},
           os.path.join(sys.argv[2], f"rank{rank}.pt"))
"""


def test_two_process_data_parallel_ends_with_identical_weights(tmp_path):
    # gradient noise must be drawn identically on both ranks, or their weights would drift apart
    cfg = dict(TINY, tricks=["gradient_noise:eta=0.01"], train={**TINY["train"], "epochs": 2, "checkpoint_every_steps": None})
    config = write_config(tmp_path, cfg)
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(29500 + os.getpid() % 1000), str(script), str(config), str(tmp_path)],
                          env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in r0["model"]:
        assert torch.equal(r0["model"][k], r1["model"][k]), k
    assert not torch.equal(r0["first_batch"], r1["first_batch"])  # each rank draws its own shard


def test_torchrun_cli_writes_one_run_directory(tmp_path):
    cfg = dict(TINY, tricks=[], train={**TINY["train"], "epochs": 1, "checkpoint_every_steps": None,
                                       "checkpoint_every_epochs": 1})
    config = write_config(tmp_path, cfg)
    out = tmp_path / "ddp_run"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(30500 + os.getpid() % 1000), "-m", "trickbag", "train", "--config", str(config),
                           "--out", str(out), "train.device=cpu"],
                          env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("result:") == 1 and proc.stdout.count("run directory:") == 1  # rank 0 reports
    assert (out / "results.json").exists() and (out / "checkpoints" / "last.pt").exists()
