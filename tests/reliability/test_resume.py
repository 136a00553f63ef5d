"""Resume at every kind of checkpoint equals the uninterrupted run, bit for bit; resuming a
finished run, or one killed after its last checkpoint, keeps its results (issue 16, items 1-2).

The killed runs stop at exact points: the test hook TRICKBAG_KILL_AFTER=checkpoint:N makes the
process SIGKILL itself right after writing its N-th checkpoint."""

from __future__ import annotations

import pytest
import torch

from trickbag.cli import main

from .helpers import STEPS_PER_EPOCH, assert_killed, assert_same_run, forked_cli, results, write_config

EPOCHS = 3


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same run, never stopped (checkpoint cadence does not change training)."""
    folder = tmp_path_factory.mktemp("reference")
    out = folder / "run"
    assert main(["train", "--config", str(write_config(folder)), "--out", str(out)]) == 0
    return out


CASES = {
    # name: (checkpoint cadence, kill after this many checkpoints, step of that checkpoint)
    "end of epoch 1, epoch cadence": ({"checkpoint_every_epochs": 1}, 1, STEPS_PER_EPOCH),
    "end of epoch 2, step cadence": ({"checkpoint_every_epochs": None, "checkpoint_every_steps": STEPS_PER_EPOCH},
                                     2, 2 * STEPS_PER_EPOCH),
    "mid-epoch 2, step cadence": ({"checkpoint_every_epochs": None, "checkpoint_every_steps": 7}, 2, 14),
    "both cadences, epoch-end one": ({"checkpoint_every_epochs": 1, "checkpoint_every_steps": 5}, 3, STEPS_PER_EPOCH),
    "last step, step cadence": ({"checkpoint_every_epochs": None, "checkpoint_every_steps": STEPS_PER_EPOCH},
                                3, 3 * STEPS_PER_EPOCH),
    "last epoch, before results.json": ({"checkpoint_every_epochs": 1}, 3, 3 * STEPS_PER_EPOCH),
}


@pytest.mark.parametrize("case", list(CASES))
def test_killed_after_a_checkpoint_then_resumed_equals_the_uninterrupted_run(case, tmp_path, uninterrupted):
    cadence, n, step = CASES[case]
    out = tmp_path / "run"
    assert_killed(forked_cli(["train", "--config", str(write_config(tmp_path, cadence)), "--out", str(out)],
                             kill=f"checkpoint:{n}"))
    assert not (out / "results.json").exists()
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["counters"]["step"] == step
    assert main(["train", "--resume", str(out)]) == 0
    assert_same_run(uninterrupted, out)
    # the time spent before the kill counts
    assert results(out)["wall_time"] >= ckpt["counters"]["fit_time"] > 0


def test_resuming_a_finished_run_keeps_its_results(tmp_path, uninterrupted, capsys):
    """A finished run's files stay byte for byte as they were, wall_time included (before issue
    23 the resume rewrote results.json with a new wall_time: 1.45 s became 1.53 s)."""
    out = tmp_path / "run"
    assert main(["train", "--config", str(write_config(tmp_path)), "--out", str(out)]) == 0
    before = results(out)
    assert before["final"]["val_acc"] > 0
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert before["wall_time"] >= ckpt["counters"]["fit_time"] > 0
    files = {f: (out / f).read_bytes() for f in ("results.json", "model.pt", "config.yaml")}
    stamps = {f: (out / f).stat().st_mtime_ns for f in files}
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 0
    assert {f: (out / f).read_bytes() for f in files} == files
    assert {f: (out / f).stat().st_mtime_ns for f in files} == stamps  # not even rewritten
    assert "already finished" in capsys.readouterr().out
    assert_same_run(uninterrupted, out)


def test_an_early_stopped_run_stays_stopped_when_resumed(tmp_path):
    # patience 1 with a flat metric: stops after epoch 2 of 6; a kill after that epoch's checkpoint
    # must not let the resumed run train on
    config = write_config(tmp_path, {"epochs": 6}, tricks=["early_stopping:monitor=lr,mode=max,patience=1"])
    full = tmp_path / "full"
    assert main(["train", "--config", str(config), "--out", str(full)]) == 0
    stopped_at = results(full)["final"]["epoch"]
    assert stopped_at < 6 and "early stopping" in results(full)["stopped"]
    out = tmp_path / "killed"
    assert_killed(forked_cli(["train", "--config", str(config), "--out", str(out)], kill=f"checkpoint:{stopped_at}"))
    assert main(["train", "--resume", str(out)]) == 0
    assert_same_run(full, out)
    assert results(out)["stopped"] == results(full)["stopped"]
