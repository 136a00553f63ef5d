"""Shared pieces of the reliability tests: a tiny config, a forked CLI run that a test hook
kills with SIGKILL at an exact point, and comparisons of run directories."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import torch
import yaml

TINY: dict[str, Any] = {
    "data": {"name": "synthetic", "options": {"num_train": 200, "num_test": 60, "shape": [16], "num_classes": 3},
             "batch_size": 16},  # 180 training examples: 11 batches (steps) per epoch
    "model": {"name": "mlp", "hidden": [32]},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "schedule": {"name": "cosine_decay"},
    "tricks": ["mixup:alpha=0.3", "ema:decay=0.9"],
    "train": {"epochs": 3, "threads": 1, "checkpoint_every_steps": None, "checkpoint_every_epochs": 1,
              "log_every": 5, "progress": False},
}
STEPS_PER_EPOCH = 11


def write_config(folder: Path, train: dict[str, Any] | None = None, name: str = "tiny.yaml", **sections: Any) -> Path:
    cfg = {**TINY, **sections, "train": {**TINY["train"], **(train or {})}}
    path = folder / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def _child(argv: list[str], kill: str | None, err: str | None, file_size_limit: int | None) -> None:
    if kill:
        os.environ["TRICKBAG_KILL_AFTER"] = kill
    import sys

    from trickbag.cli import main

    if file_size_limit is not None:  # writes past it fail with EFBIG, as on a full disk with ENOSPC
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the process ends here
    sys.stderr = open(err, "w") if err else sys.stdout  # noqa: SIM115
    code = main(argv)
    sys.stderr.flush()
    os._exit(code)


def forked_cli(argv: list[str], kill: str | None = None, timeout: float = 300, *, err: Path | None = None,
               file_size_limit: int | None = None) -> int:
    """Run ``trickbag argv`` in a forked process (fast: torch is already imported); with
    ``kill="checkpoint:N"`` it kills itself with SIGKILL right after its N-th checkpoint
    (``"write:N"``: in the middle of its N-th atomic write). ``err`` receives its stderr;
    ``file_size_limit`` caps the size of any file it writes (RLIMIT_FSIZE). Returns the exit
    code (``-SIGKILL`` when killed)."""
    proc = multiprocessing.get_context("fork").Process(
        target=_child, args=(argv, kill, str(err) if err else None, file_size_limit))
    proc.start()
    proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        raise AssertionError(f"trickbag {' '.join(argv)} did not finish in {timeout}s")
    return proc.exitcode


def assert_killed(code: int) -> None:
    assert code == -signal.SIGKILL, f"the run was meant to be killed by its test hook; exit code {code}"


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=True)


def results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


def comparable(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A history without its timings (the only values allowed to differ between runs)."""
    return [{k: v for k, v in h.items() if k not in ("epoch_time", "samples_per_sec")} for h in history]


def assert_same_run(a: Path, b: Path) -> None:
    """Bit-for-bit the same weights, the same (epoch, step) pairs and the same metrics."""
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"weights differ: {k}"
    ra, rb = results(a), results(b)
    assert [(h["epoch"], h["step"]) for h in rb["history"]] == [(h["epoch"], h["step"]) for h in ra["history"]]
    assert comparable(rb["history"]) == comparable(ra["history"])
    assert comparable([rb["final"]]) == comparable([ra["final"]])
    assert rb["test"] == ra["test"]
