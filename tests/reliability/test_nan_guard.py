"""A diverged run exits non-zero, never writes non-finite weights as model.pt, keeps the last
finite ones (or none) and says truthfully which (issue 16, item 5)."""

from __future__ import annotations

import pytest
import torch

from trickbag.cli import main

from .helpers import results, write_config

NO_CHECKPOINTS = {"checkpoint_every_epochs": None}


def finite(state_dict) -> bool:
    return all(torch.isfinite(t).all() for t in state_dict.values() if t.is_floating_point())


def train(tmp_path, capsys, overrides, train=None):
    out = tmp_path / "run"
    code = main(["train", "--config", str(write_config(tmp_path, {"epochs": 4, **(train or {})}, tricks=[], schedule=None)),
                 "--out", str(out), *overrides])
    return code, out, capsys.readouterr().err


def test_diverged_with_spoiled_weights_and_no_checkpoint_keeps_none(tmp_path, capsys):
    # lr 1e5: BatchNorm's running variance overflows in epoch 1, before the first checkpoint
    code, out, err = train(tmp_path, capsys, ["optimizer.lr=1e5"])
    assert code == 1
    assert not (out / "model.pt").exists()
    assert not (out / "checkpoints" / "last.pt").exists()
    assert "diverged" in err and "no weights were kept (no model.pt)" in err
    r = results(out)
    assert r["diverged"] is True and "no model.pt" in r["kept"] and "test" not in r
    assert "checkpoint is kept" not in err + r["stopped"]  # what the old message claimed with none there


def test_diverged_after_a_checkpoint_keeps_the_checkpoints_weights(tmp_path, capsys):
    # lr 200: the end-of-epoch-1 checkpoint is finite; the running variance overflows in epoch 2
    code, out, err = train(tmp_path, capsys, ["optimizer.lr=200"], {"checkpoint_every_epochs": 1})
    assert code == 1
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    step = ckpt["counters"]["step"]
    assert f"from the checkpoint of step {step}" in err
    kept = torch.load(out / "model.pt", weights_only=True)
    assert finite(kept)
    for k, v in ckpt["model"].items():
        assert torch.equal(kept[k], v), k


def test_diverged_before_the_weights_spoil_keeps_the_current_weights(tmp_path, capsys):
    # no BatchNorm: the guard sees the non-finite loss and skips the update, so the weights after
    # the previous step are the last finite ones
    code, out, err = train(tmp_path, capsys, ["optimizer.lr=1e6", "model.norm=none"], NO_CHECKPOINTS)
    assert code == 1
    r = results(out)
    step = r["final"]["step"]
    assert f"model.pt holds the weights after step {step}, the last finite ones" in err
    assert finite(torch.load(out / "model.pt", weights_only=True))


def test_nonfinite_weights_at_the_end_are_never_saved_even_without_the_guard(tmp_path, capsys):
    code, out, err = train(tmp_path, capsys, ["optimizer.lr=1e5", "train.nan_guard=false"], NO_CHECKPOINTS)
    assert code == 1
    assert not (out / "model.pt").exists()
    assert "not finite" in results(out)["stopped"]


@pytest.mark.parametrize("lr", ["0.05"])
def test_a_healthy_run_is_unaffected(lr, tmp_path, capsys):
    code, out, err = train(tmp_path, capsys, [f"optimizer.lr={lr}"], {"epochs": 1})
    assert code == 0 and "diverged" not in results(out)
    assert finite(torch.load(out / "model.pt", weights_only=True))
