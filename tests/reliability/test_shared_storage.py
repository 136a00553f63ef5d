"""Several processes on one study: no IntegrityError when they create a fresh SQLite schema
together, no trial claimed twice on SQLite or PostgreSQL, and ablation folders that read
their own database after a move or a copy (issue 16, items 3, 6, 7, 8)."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import tempfile
from pathlib import Path

import pytest

from trickbag import _study
from trickbag.ablation import run
from trickbag.cli import main

from .claim_worker import open_only, work
from .helpers import write_config

SLOTS = 40


@pytest.fixture
def memory_dir(tmp_path):
    """A folder in memory (/dev/shm) where there is one: SQLite's commits then cost no fsync,
    and the test stays at a few seconds; the race it looks for is the same."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and shm.stat().st_mode & 0o002):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="trickbag-stress-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def stress(url: str, processes: int, folder: Path) -> None:
    """Fork ``processes`` workers (real processes; forked so that none pays for importing
    Optuna again) and start them on a fresh study together: every slot must be claimed by
    exactly one of them, and none may crash."""
    import optuna  # imported once, here, before the fork

    go = folder / f"go-{processes}"
    name = f"stress-{processes}"
    ctx = multiprocessing.get_context("fork")
    results = [folder / f"worker-{processes}-{i}.json" for i in range(processes)]
    procs = [ctx.Process(target=work, args=(url, name, SLOTS, go, 0.003, r)) for r in results]
    for p in procs:
        p.start()
    go.touch()
    for p in procs:
        p.join(300)
    outputs = [json.loads(r.read_text()) if r.exists() else {"error": "no result"} for r in results]
    for p, out in zip(procs, outputs):
        assert p.exitcode == 0 and isinstance(out, list), out["error"][-3000:] if isinstance(out, dict) else out
    claims = [c for out in outputs for c in out]
    numbers = [n for n, _ in claims]
    slots = [s for _, s in claims]
    assert len(numbers) == len(set(numbers)), "a trial was claimed by two workers"
    assert sorted(slots) == sorted(f"s{i}" for i in range(SLOTS)), "a slot ran twice, or not at all"
    trials = optuna.load_study(study_name=name, storage=_study.storage_url(url, folder)).get_trials()
    assert len(trials) == SLOTS and all(t.state.name == "COMPLETE" for t in trials)


def test_processes_creating_one_sqlite_schema_together_never_fail(memory_dir):
    # the loser of the race to create Optuna's schema died with IntegrityError (UNIQUE constraint
    # failed: alembic_version.version_num) in 4 of 10 rounds (here, in the first
    # round or the second)
    import optuna  # noqa: F401  (imported before the fork)

    ctx = multiprocessing.get_context("fork")
    for round_ in range(2):
        go, url = memory_dir / f"go{round_}", f"sqlite:///{memory_dir / f'fresh{round_}.db'}"
        results = [memory_dir / f"open{round_}-{i}" for i in range(4)]
        procs = [ctx.Process(target=open_only, args=(url, go, r)) for r in results]
        for p in procs:
            p.start()
        go.touch()
        for p in procs:
            p.join(120)
        for p, r in zip(procs, results):
            assert p.exitcode == 0, r.read_text()[-3000:] if r.exists() else "no result"


@pytest.mark.parametrize("processes", [2, 4])
def test_workers_on_a_fresh_sqlite_file_never_collide(processes, memory_dir):
    stress(f"sqlite:///{memory_dir / 'study.db'}", processes, memory_dir)


@pytest.mark.parametrize("processes", [2, 4])
def test_workers_on_postgresql_never_collide(processes, tmp_path, postgres_url):
    stress(postgres_url, processes, tmp_path)


ABLATION = {"epochs": 1, "checkpoint_every_epochs": None}


def test_moved_and_copied_ablation_folders_read_their_own_database(tmp_path, capsys):
    config = write_config(tmp_path, ABLATION, tricks=[])
    original = tmp_path / "original"
    run(config, "ema:decay=0.9", seeds=1, out=original, progress=False)
    assert json.loads((original / "ablation.json").read_text())["storage"] == "sqlite:///study.db"
    # a copy reads its own database: emptied of its trials, the copy's report says so, the original's not
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    import optuna

    meta = json.loads((copy / "ablation.json").read_text())
    optuna.delete_study(study_name=meta["study"], storage=_study.storage_url(meta["storage"], copy))
    assert main(["report", str(copy)]) == 2
    assert "holds no study" in capsys.readouterr().err
    assert main(["report", str(original)]) == 0
    # a moved folder: the old place still exists (recreated empty), the report must neither create a
    # database there nor write an empty report
    moved = tmp_path / "moved"
    original.rename(moved)
    original.mkdir()
    assert main(["report", str(moved)]) == 0
    assert "| ema" in (moved / "report.md").read_text() or "ema" in (moved / "report.md").read_text()
    assert not any(original.iterdir())
    # and a folder whose database is gone fails, creating nothing
    (moved / "study.db").unlink()
    assert main(["report", str(moved)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (moved / "study.db").exists()


def test_an_unknown_metric_fails_before_the_first_trial(tmp_path, capsys):
    config = write_config(tmp_path, ABLATION, tricks=[])
    out = tmp_path / "out"
    assert main(["ablate", "--config", str(config), "--tricks", "ema", "--metric", "val_accc", "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown metric 'val_accc'; did you mean 'val_acc'" in err and "val_loss" in err
    assert not out.exists()
    # a metric only some arms report names the arm that lacks it
    with pytest.raises(ValueError, match="arm 'swa.*' does not report|unknown metric 'best_epoch'"):
        run(config, "swa", seeds=1, metric="best_epoch", out=tmp_path / "b", progress=False)
    assert not (tmp_path / "b").exists()
