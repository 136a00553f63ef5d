"""Full, read-only and unwritable disks; killed writes (issue 16, items 4 and 11).

Every artefact is written atomically (a temporary file in the same folder, fsync, rename), so a
disk that fills while model.pt is written leaves no torn file, and the error is one sentence.
The full disk is a small tmpfs where the test may mount one (root with CAP_SYS_ADMIN), else a
file-size limit (RLIMIT_FSIZE), which makes writes fail the same way without privileges."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from trickbag import _atomic
from trickbag.cli import main
from trickbag.train import save_atomic

from .helpers import assert_killed, assert_same_run, forked_cli, write_config

BIG_MODEL = {"name": "mlp", "hidden": [512, 512]}  # model.pt of about 1.1 MB
LIMIT = 512 * 1024


@pytest.fixture
def mount_tmpfs(tmp_path):
    """``mount_tmpfs(size, read_only=False) -> Path``: a tmpfs of ``size`` bytes, unmounted after
    the test; the test is skipped where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(size: int, read_only: bool = False) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        opts = f"size={size}" + (",ro" if read_only else "")
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], capture_output=True,
                                  timeout=30)
        except OSError as exc:
            pytest.skip(f"cannot mount a tmpfs here ({exc})")
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30)


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and "Warning" not in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def no_temporary_files(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")], sorted(folder.rglob("*"))


@pytest.mark.parametrize("disk", ["tmpfs", "file-size limit"])
def test_a_disk_that_fills_while_model_pt_is_written_leaves_no_torn_file(disk, tmp_path, mount_tmpfs):
    config = write_config(tmp_path, {"epochs": 1, "checkpoint_every_epochs": None}, model=BIG_MODEL, tricks=[])
    folder = mount_tmpfs(LIMIT) if disk == "tmpfs" else tmp_path
    out, err = folder / "run", tmp_path / "stderr"
    code = forked_cli(["train", "--config", str(config), "--out", str(out)], err=err,
                      file_size_limit=None if disk == "tmpfs" else LIMIT)
    line = one_line(err.read_text())
    assert code == 2
    assert "model.pt" in line and ("disk is full" in line or "file-size limit" in line), line
    if (out / "model.pt").exists():  # never a torn file: either the old one or a whole new one
        torch.load(out / "model.pt", weights_only=True)
    no_temporary_files(out)


def _write_too_much(path: str, limit: int | None) -> None:
    if limit is not None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        save_atomic({"w": torch.zeros(2 * LIMIT // 4)}, path)
    except OSError:
        os._exit(3)
    os._exit(0)


@pytest.mark.parametrize("disk", ["tmpfs", "file-size limit"])
def test_a_failed_atomic_write_keeps_the_old_file(disk, tmp_path, mount_tmpfs):
    folder = mount_tmpfs(LIMIT) if disk == "tmpfs" else tmp_path
    path = folder / "model.pt"
    save_atomic({"w": torch.ones(10)}, path)
    proc = multiprocessing.get_context("fork").Process(
        target=_write_too_much, args=(str(path), None if disk == "tmpfs" else LIMIT))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 3  # the write failed with an OSError ...
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(10))  # ... and the old file is whole
    no_temporary_files(folder)


def test_read_only_out_gets_one_sentence(tmp_path, mount_tmpfs, capsys):
    config = write_config(tmp_path, {"epochs": 1})
    out = mount_tmpfs(LIMIT, read_only=True) / "run"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    assert "read-only" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("verb", ["train", "ablate", "lr-find"])
def test_an_unwritable_out_gets_one_sentence_and_debug_the_traceback(verb, tmp_path, capsys):
    config = write_config(tmp_path, {"epochs": 1, "checkpoint_every_epochs": None})
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "run"
    extra = {"train": [], "ablate": ["--tricks", "ema", "--quiet"],
             # a sweep that would fail by itself: the folder must be checked before it
             "lr-find": ["--min", "1e6", "--max", "1e7", "--steps", "5"]}[verb]
    argv = [verb, "--config", str(config), "--out", str(out), *extra]
    assert main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert str(blocker) in line and "not a folder" in line, line
    assert main([*argv, "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_lr_find_writes_into_a_run_folder_by_default(tmp_path, monkeypatch, capsys):
    config = write_config(tmp_path, {"epochs": 1})
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["lr-find", "--config", str(config), "--steps", "20", "--min", "1e-4", "--max", "1"]) == 0
    assert not (work / "lr_find.json").exists() and not (work / "lr_find.png").exists()
    found = list((work / "runs").glob("lr_find-tiny-*/lr_find.json"))
    assert len(found) == 1 and (found[0].parent / "lr_find.png").exists()


def test_a_write_killed_midway_leaves_an_orphan_that_resume_removes(tmp_path):
    config = write_config(tmp_path)
    reference = tmp_path / "reference"
    assert main(["train", "--config", str(config), "--out", str(reference)]) == 0
    out = tmp_path / "run"
    # atomic writes: config.yaml, meta.json, then checkpoints/last.pt at the end of epoch 1
    assert_killed(forked_cli(["train", "--config", str(config), "--out", str(out)], kill="write:3"))
    orphans = list((out / "checkpoints").glob(".last.pt.*.tmp"))
    assert len(orphans) == 1 and not (out / "checkpoints" / "last.pt").exists()
    # an orphan of an older version (random name), and the temporary file of a live writer
    legacy = out / ".results.json.k3j2x9a_.tmp"
    legacy.write_text("{")
    live = out / f".model.pt.0123abcd.{os.getpid()}@{_atomic._HOST}.tmp"
    live.write_text("")
    assert main(["train", "--resume", str(out)]) == 0
    assert not orphans[0].exists() and not legacy.exists()
    assert live.exists()  # its writer (this process) is alive: not an orphan
    live.unlink()
    assert_same_run(reference, out)
