"""Contract checks for tricks, built-in or your own: what every catalog entry must pass.

Use it in your own test suite on a trick you registered (``trickbag.catalog.register`` or the
``trickbag.tricks`` entry point)::

    from trickbag.testing import check_trick

    def test_my_trick_keeps_trickbags_contracts():
        check_trick("my_trick")
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from trickbag import catalog

__all__ = ["check_trick", "contract_config"]


def contract_config(name: str, *extra: str, model: dict[str, Any] | None = None, steps: int = 8,
                    checkpoint_every_steps: int | None = None, text: bool = False):
    """The small run the contracts train: synthetic data (8x8 grey images, or token sequences
    with ``text``), a small CNN (or ``model``), SGD, ``tricks: [name, *extra]``."""
    from trickbag.train.config import load_config

    if model is None:
        model = {"name": "text_cnn", "embed_dim": 8, "num_filters": 4} if text else {"name": "small_cnn", "width": 4}
    return load_config({
        "data": {"name": "synthetic", "batch_size": 32, "eval_batch_size": 32, "val_fraction": 0.25},
        "model": model,
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "tricks": [name, *extra],
        "train": {"epochs": None, "steps": steps, "progress": False, "checkpoint_every_steps": checkpoint_every_steps,
                  "checkpoint_every_epochs": None, "seed": 3, "deterministic": True},
    })


def _splits(text: bool):
    from trickbag.data import Splits, split_off, synthetic

    raw = (synthetic(num_train=128, num_test=32, shape=(10,), num_classes=2, vocab_size=40, seed=1) if text
           else synthetic(num_train=128, num_test=32, shape=(1, 8, 8), num_classes=3, seed=1))
    train, val = split_off(raw.train, 0.25)
    return Splits(train, val, raw.test, name=raw.name, vocab=raw.vocab)


def _weights(run) -> list[torch.Tensor]:
    return [t.detach().clone() for t in run.trainer.state.raw_model.state_dict().values()]


def _fit(cfg, text: bool, run_dir=None, resume_from=None, stop_at: int | None = None):
    from trickbag.train import callbacks as C
    from trickbag.train.build import build_run

    class StopAt(C.Callback):  # a crash part way (the schedule still spans the whole run)
        def on_step_end(self, state):
            if state.step == stop_at:
                state.stop("stopped for the resume contract")

    run = build_run(cfg, splits=_splits(text), run_dir=run_dir, callbacks=[StopAt()] if stop_at else [])
    if resume_from is not None:
        run.trainer.load_checkpoint(resume_from)
    run.fit()
    return run


def check_trick(name: str, *, model: dict[str, Any] | None = None, partner: str = "flooding", text: bool = False,
                steps: int = 8) -> None:
    """Check the contracts every built-in trick passes, on CPU, in a few seconds:

    1. it trains ``steps`` steps in the trainer from a config naming it, with finite weights;
    2. it is deterministic under a seed (two runs, bitwise-equal weights);
    3. a run stopped half way with a checkpoint and resumed in a fresh process-like run ends
       with the same weights as an uninterrupted run;
    4. it combines with another trick (``partner``).

    Raises ``AssertionError`` naming the contract that failed. ``model`` replaces the small CNN
    (e.g. a model with the layers your trick needs); ``text`` trains a text CNN on token data.
    """
    entry = catalog.get(name)
    if entry.use is None:
        raise ValueError(f"trick {name!r} has no config form (use=None): the contracts need one")
    cfg = contract_config(name, model=model, steps=steps, text=text)
    a = _fit(cfg, text)
    assert a.trainer.state.step == steps, f"{name}: trained {a.trainer.state.step} of {steps} steps"
    assert all(torch.isfinite(w).all() for w in _weights(a) if w.is_floating_point()), f"{name}: non-finite weights"
    b = _fit(cfg, text)
    for wa, wb in zip(_weights(a), _weights(b)):
        assert torch.equal(wa, wb), f"{name}: not deterministic under a seed"
    half = steps // 2
    with tempfile.TemporaryDirectory(prefix="trickbag-contract-") as tmp:
        tmp = Path(tmp)
        ckpt_cfg = contract_config(name, model=model, steps=steps, text=text, checkpoint_every_steps=half)
        _fit(ckpt_cfg, text, run_dir=tmp / "stopped", stop_at=half)
        resumed = _fit(ckpt_cfg, text, run_dir=tmp / "stopped", resume_from=tmp / "stopped" / "checkpoints" / "last.pt",
                       stop_at=half)
        assert resumed.trainer.state.step == steps, f"{name}: the resumed run trained to {resumed.trainer.state.step}"
        full = _fit(ckpt_cfg, text, run_dir=tmp / "full")
        for wr, wf in zip(_weights(resumed), _weights(full)):
            assert torch.equal(wr, wf), f"{name}: a resumed run differs from an uninterrupted one"
    combined = _fit(contract_config(name, partner, model=model, steps=steps, text=text), text)
    assert combined.trainer.state.step == steps, f"{name}: did not combine with {partner}"
