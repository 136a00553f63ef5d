"""Progress when the output is not a terminal: plain lines at a steady cadence (issue 24 item 3)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from subproc import subprocess_env
from trickbag._progress import ENV, Ticker, format_seconds, interval_s

TINY = {
    "data": {"name": "synthetic", "options": {"num_train": 600, "num_test": 100, "shape": [16], "num_classes": 3},
             "batch_size": 8},
    "model": {"name": "mlp", "hidden": [64, 64]},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "train": {"epochs": 6, "threads": 1, "checkpoint_every_epochs": None},
}


def _run_piped(tmp_path, *args: str, interval: str = "0.2") -> str:
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    log = tmp_path / "log.txt"
    with open(log, "w") as f:  # a file, as `trickbag train ... > log 2>&1` gives
        done = subprocess.run([sys.executable, "-m", "trickbag", *args], cwd=tmp_path, stdout=f, stderr=subprocess.STDOUT,
                              env={**subprocess_env(), ENV: interval}, timeout=300)
    text = log.read_text()
    assert done.returncode == 0, text[-3000:]
    return text


def test_train_into_a_file_prints_steady_progress_lines(tmp_path):
    text = _run_piped(tmp_path, "train", "--config", "tiny.yaml", "--out", "run", interval="0.05")
    lines = re.findall(r"^epoch (\d)/6  step (\d+)/402 \(\d+/67 of the epoch\)  loss (\d+\.\d{4})  lr \S+  "
                       r"(\d+) samples/s  ETA (\S+) \(training\)$", text, flags=re.M)  # 536 examples / 8 a batch
    assert len(lines) >= 2, text[-3000:]
    steps = [int(s) for _, s, *_ in lines]
    assert steps == sorted(steps) and all(0 < s <= 402 for s in steps)
    assert all(int(rate) > 0 for *_, rate, _ in lines)
    assert len(re.findall(r"^epoch \d/6  step \d+/402  loss", text, flags=re.M)) == 6  # the per-epoch lines stay


def test_lr_find_into_a_file_prints_steady_progress_lines(tmp_path):
    text = _run_piped(tmp_path, "lr-find", "--config", "tiny.yaml", "--steps", "300", "--out", "lr", interval="0.05")
    lines = re.findall(r"^lr-find step (\d+)/300  lr \S+  loss \S+ \(smoothed \S+\)  \S+ steps/s  ETA \S+ at most$",
                       text, flags=re.M)
    assert lines, text[-3000:]
    assert "steepest descent" in text


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert interval_s() == 30.0
    monkeypatch.setenv(ENV, "2.5")
    assert interval_s() == 2.5 and Ticker().interval == 2.5
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv(ENV, bad)
        with pytest.raises(ValueError, match=f"{ENV} must be a number of seconds > 0, got '{bad}'"):
            interval_s()
    ticker = Ticker(interval=1e-9)
    assert ticker.due() and Ticker(interval=3600).due() is False
    assert [format_seconds(s) for s in (4.4, 185, 3720)] == ["4s", "3m05s", "1h02m"]
