"""Contracts over the catalog (trickbag.testing.check_trick): every trick with a config form trains
a few CPU steps in the trainer, is deterministic under a seed, resumes exactly from a checkpoint,
and combines with another trick."""

from __future__ import annotations

import pytest

from trickbag import catalog
from trickbag.testing import check_trick, contract_config

CONFIGURABLE = [t.name for t in catalog.TRICKS if t.use is not None]
TEXT = {"fgm", "pgd_embedding", "freelb", "max_norm"}
MODEL_FOR = {"zero_init_residual": {"name": "resnet_cifar", "depth": 8, "width": 4},
             "patch_whitening": {"name": "speedrun_cnn", "widths": [4, 4]}}
PARTNER = {"flooding": "gradient_clipping"}  # everything else is paired with flooding


@pytest.mark.parametrize("name", CONFIGURABLE)
def test_trains_deterministically_resumes_exactly_and_combines(name):
    check_trick(name, model=MODEL_FOR.get(name), partner=PARTNER.get(name, "flooding"), text=name in TEXT)


def test_unknown_trick_parameters_fail_before_training():
    from trickbag.data import synthetic
    from trickbag.train.build import build_run

    splits = synthetic(num_train=64, num_test=16, shape=(1, 8, 8), num_classes=3, seed=1)
    cases = [
        (("mixup:alfa=0.2",), "unknown parameter for trick mixup 'alfa'; did you mean 'alpha'"),
        (("focal_los",), "unknown trick 'focal_los'; did you mean 'focal_loss'"),
        (("cosine_decay", "one_cycle"), "'cosine_decay' and 'one_cycle' are both schedules"),
        (("wgan",), "trick 'wgan' \\(loss\\) has no config form"),
    ]
    for tricks, match in cases:
        with pytest.raises(ValueError, match=match):
            build_run(contract_config(*tricks), splits=splits)


def test_a_failing_trick_is_named_by_the_contract_it_breaks():
    """The checker can fail: a callback that breaks determinism (noise from the OS, not from the
    seeded generators) is caught and named."""
    import os

    import torch

    from trickbag.train.callbacks import Callback

    class Jitter(Callback):
        def on_step_end(self, state):
            with torch.no_grad():
                next(state.raw_model.parameters()).add_(int.from_bytes(os.urandom(2), "little") * 1e-6)

    catalog.register(catalog.Trick("jitter_for_test", "regularizer", "Adds fresh noise to one weight.",
                                   "A test. Not a Paper. 2026.", "torch:randn", "torch:randn",
                                   callback=f"{__name__}:_Jitter", use="callback"))
    try:
        globals()["_Jitter"] = Jitter
        with pytest.raises(AssertionError, match="jitter_for_test: not deterministic under a seed"):
            check_trick("jitter_for_test")
    finally:
        catalog.unregister("jitter_for_test")
