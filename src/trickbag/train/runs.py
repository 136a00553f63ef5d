"""Run directories: resolved config, provenance, and resuming."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from trickbag._atomic import remove_orphans, tidy_folder, write_json, write_text
from trickbag._provenance import provenance
from trickbag.train.build import Run, build_run
from trickbag.train.config import RunConfig, load_config
from trickbag.train.distributed import world

__all__ = ["new_run_dir", "start_run", "resume_run"]


def new_run_dir(cfg: RunConfig, out: str | Path | None) -> Path:
    if out is not None:
        path = Path(out)
        # Only rank 0 checks: under torchrun the other ranks may look after rank 0 has written.
        # A folder holding only the temporary files of a write killed before the first file was
        # complete (no config.yaml yet) counts as new: those files are removed.
        if world()[0] == 0 and tidy_folder(path):
            raise ValueError(f"run directory {path} is not empty; use --resume {path} to continue it, or a new --out")
        return path
    if world()[2] > 1:
        raise ValueError("under torchrun give --out (every process must use the same run directory)")
    stem = Path(cfg.source).stem if cfg.source else "run"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _write_meta(run: Run, path: Path, extra: dict[str, Any]) -> None:
    meta = {
        **provenance(),
        "seed": run.config.train.seed,
        "split_seed": run.config.data.split_seed,
        "world_size": world()[2],
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "effective": {"optimizer": run.config.optimizer, "schedule": run.config.schedule,
                      "callbacks": [cb.name for cb in run.trainer.callbacks]},
        **extra,
    }
    write_json(path / "meta.json", meta, default=str)


def start_run(cfg: RunConfig, out: str | Path | None = None) -> Run:
    """Build a run in a new run directory holding its resolved config and provenance.

    Everything is checked (names, values, the data, the optimizer's arguments) before the
    directory is created, so a bad config leaves nothing behind."""
    path = new_run_dir(cfg, out)
    run = build_run(cfg, run_dir=path)  # fails on bad names and values before anything is written
    if world()[0] == 0:
        path.mkdir(parents=True, exist_ok=True)
        write_text(path / "config.yaml", cfg.to_yaml())
        _write_meta(run, path, {})
    return run


def resume_run(run_dir: str | Path) -> Run:
    """Rebuild the run of ``run_dir`` from its config and continue from its last checkpoint
    (a finished run keeps its results: its final metrics come from the checkpoint). The
    temporary files of writes a kill interrupted are removed first."""
    path = Path(run_dir)
    config_file = path / "config.yaml"
    if not config_file.exists():
        if path.is_dir() and not tidy_folder(path):
            raise FileNotFoundError(f"{path} holds no config.yaml: the run was stopped before it started; "
                                    f"start it again with --config CONFIG --out {path}")
        raise FileNotFoundError(f"{path} is not a run directory (no config.yaml)")
    cfg = load_config(config_file)
    run = build_run(cfg, run_dir=path)
    if world()[0] == 0:
        remove_orphans(path, path / "checkpoints", path / "snapshots")
    last = path / "checkpoints" / "last.pt"
    if last.exists():
        run.trainer.load_checkpoint(last)
    else:
        print(f"trickbag: no checkpoint in {path}; starting from the beginning", file=sys.stderr)
    return run
