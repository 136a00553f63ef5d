"""Contracts over the catalog: every trick with a config form trains a few CPU steps in the
trainer, is deterministic under a seed, resumes exactly from a checkpoint, and combines with
another trick."""

from __future__ import annotations

import pytest
import torch

from trickbag import catalog
from trickbag.data import synthetic
from trickbag.train import callbacks as C
from trickbag.train.build import build_run
from trickbag.train.config import load_config

CONFIGURABLE = [t.name for t in catalog.TRICKS if t.use is not None]
TEXT = {"fgm", "pgd_embedding", "freelb", "max_norm"}
MODEL_FOR = {"zero_init_residual": {"name": "resnet_cifar", "depth": 8, "width": 4}}
PARTNER = {"flooding": "gradient_clipping"}  # everything else is paired with flooding
STEPS = 8  # with 96 training examples in batches of 32: 3 steps an epoch

_IMAGES = synthetic(num_train=128, num_test=32, shape=(1, 8, 8), num_classes=3, seed=1)
_TEXT = synthetic(num_train=128, num_test=32, shape=(10,), num_classes=2, vocab_size=40, seed=1)


def config(name, *extra, steps=STEPS, ckpt=None):
    text = name in TEXT
    model = {"name": "text_cnn", "embed_dim": 8, "num_filters": 4} if text else MODEL_FOR.get(name, {"name": "small_cnn", "width": 4})
    raw = {
        "data": {"name": "synthetic", "batch_size": 32, "eval_batch_size": 32, "val_fraction": 0.25},
        "model": model,
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "tricks": [name, *extra],
        "train": {"epochs": None, "steps": steps, "progress": False, "checkpoint_every_steps": ckpt,
                  "checkpoint_every_epochs": None, "seed": 3},
    }
    return load_config(raw), (_TEXT if text else _IMAGES)


def fresh(splits):
    from trickbag.data import Splits, split_off

    train, val = split_off(splits.train, 0.25)
    return Splits(train, val, splits.test, name=splits.name, vocab=splits.vocab)


def weights(run):
    return [t.detach().clone() for t in run.trainer.state.raw_model.state_dict().values()]


class StopAt(C.Callback):
    """Stops a full-length run part way, as a crash would (the schedule still spans the run)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, state):
        if state.step == self.step:
            state.stop("stopped for the resume test")


def fit(cfg, splits, run_dir=None, resume_from=None, callbacks=()):
    run = build_run(cfg, splits=fresh(splits), run_dir=run_dir, callbacks=callbacks)
    if resume_from is not None:
        run.trainer.load_checkpoint(resume_from)
    run.fit()
    return run


@pytest.mark.parametrize("name", CONFIGURABLE)
def test_trains_deterministically_and_resumes_exactly(name, tmp_path):
    cfg, splits = config(name)
    a = fit(cfg, splits)
    assert a.trainer.state.step == STEPS
    assert all(torch.isfinite(w).all() for w in weights(a))
    b = fit(cfg, splits)
    for wa, wb in zip(weights(a), weights(b)):
        assert torch.equal(wa, wb), "not deterministic under a seed"
    # stop after 4 steps with a checkpoint, resume in a new run: same weights as uninterrupted
    cfg_ckpt, _ = config(name, ckpt=4)
    fit(cfg_ckpt, splits, run_dir=tmp_path, callbacks=[StopAt(4)])
    resumed = fit(cfg_ckpt, splits, run_dir=tmp_path, resume_from=tmp_path / "checkpoints" / "last.pt",
                  callbacks=[StopAt(4)])
    assert resumed.trainer.state.step == STEPS
    full = fit(cfg_ckpt, splits, run_dir=tmp_path / "full")
    for wr, wf in zip(weights(resumed), weights(full)):
        assert torch.equal(wr, wf), "resume differs from an uninterrupted run"


@pytest.mark.parametrize("name", CONFIGURABLE)
def test_combines_with_another_trick(name):
    partner = PARTNER.get(name, "flooding")
    cfg, splits = config(name, partner)
    run = fit(cfg, splits)
    assert run.trainer.state.step == STEPS


def test_unknown_trick_parameters_fail_before_training():
    cfg, splits = config("mixup:alfa=0.2")
    with pytest.raises(ValueError, match="unknown parameter for trick mixup 'alfa'; did you mean 'alpha'"):
        build_run(cfg, splits=fresh(splits))
    cfg, splits = config("focal_los")
    with pytest.raises(ValueError, match="unknown trick 'focal_los'; did you mean 'focal_loss'"):
        build_run(cfg, splits=fresh(splits))
    cfg, splits = config("cosine_decay", "one_cycle")
    with pytest.raises(ValueError, match="'cosine_decay' and 'one_cycle' are both schedules"):
        build_run(cfg, splits=fresh(splits))
    cfg, splits = config("wgan")
    with pytest.raises(ValueError, match="trick 'wgan' \\(loss\\) has no config form"):
        build_run(cfg, splits=fresh(splits))
