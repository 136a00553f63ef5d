"""Test-time augmentation against its definition, in the trainer and as a config trick."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trickbag.augment import TTA, tta_logits, tta_views


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 5, 4)).double().eval()


def test_views_are_mirrors_and_reflect_padded_shifts(gen):
    x = torch.rand(3, 2, 6, 7, generator=gen, dtype=torch.float64)
    views = tta_views(x, flip=True, translate=2)
    assert [w for _, w in views] == [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    expected = [x, x.flip(3), padded[:, :, :6, :7], padded[:, :, :6, :7].flip(3), padded[:, :, 4:, 4:],
                padded[:, :, 4:, 4:].flip(3)]
    for (v, _), e in zip(views, expected):
        assert torch.equal(v, e)
    # a shift moves content: pixel (i, j) of the down-right view is pixel (i - 2, j - 2) of x
    assert torch.equal(views[2][0][:, :, 2:, 2:], x[:, :, :4, :5])
    assert [w for _, w in tta_views(x, flip=False)] == [1.0]
    assert sum(w for _, w in tta_views(x, flip=False, translate=1)) == 1.0
    u8 = (x * 255).to(torch.uint8)
    assert tta_views(u8, translate=1)[2][0].dtype == torch.uint8


@pytest.mark.parametrize("flip, translate", [(True, 0), (False, 1), (True, 1), (True, 2)])
def test_logits_are_the_weighted_mean_over_the_views(gen, flip, translate):
    net = _net()
    x = torch.rand(5, 2, 6, 7, generator=gen, dtype=torch.float64)
    expected = sum(w * net(v) for v, w in tta_views(x, flip=flip, translate=translate))
    got = tta_logits(net, x, flip=flip, translate=translate)
    torch.testing.assert_close(got, expected.float())
    torch.testing.assert_close(TTA(net, flip=flip, translate=translate)(x), got)
    if flip or translate:
        assert not torch.allclose(got, net(x).float())  # the views change the answer


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="translate must be an integer number of pixels >= 0, got -1"):
        tta_views(torch.zeros(1, 1, 4, 4), translate=-1)
    with pytest.raises(ValueError, match=r"translate=4 must be smaller than the image \(4x4\)"):
        tta_views(torch.zeros(1, 1, 4, 4), translate=4)
    with pytest.raises(ValueError, match=r"batch of images \(N, C, H, W\)"):
        tta_logits(nn.Identity(), torch.zeros(3, 4))


def test_the_trick_evaluates_the_final_epoch_and_the_test_split_with_tta(tmp_path):
    from trickbag.data import Splits, split_off, synthetic
    from trickbag.train.build import build_run
    from trickbag.train.config import load_config

    raw = synthetic(num_train=128, num_test=48, shape=(2, 6, 6), num_classes=3, seed=2)
    splits = Splits(*split_off(raw.train, 0.25), raw.test, name=raw.name)
    cfg = load_config({
        "data": {"name": "synthetic", "batch_size": 32, "eval_batch_size": 16, "val_fraction": 0.25},
        "model": {"name": "small_cnn", "width": 4},
        "optimizer": {"name": "sgd", "lr": 0.05},
        "tricks": [{"tta": {"translate": 1}}],
        "train": {"epochs": 3, "progress": False, "seed": 1},
    })
    from trickbag.train.callbacks import Callback

    used = []

    class Spy(Callback):  # runs after the trick's EVAL_START
        def on_eval_start(self, state):
            used.append(state.eval_forward is not None)

    run = build_run(cfg, splits=splits, callbacks=[Spy()])
    results = run.fit()
    assert used == [False, False, True]  # only the final evaluation pays for the views
    trainer, val = run.trainer, run.trainer.val_data

    def tta(m, x):
        return tta_logits(m, x, flip=True, translate=1)

    with_tta = trainer.evaluate(val, forward=tta)
    plain = trainer.evaluate(val, forward=lambda m, x: m(x))
    assert with_tta["val_loss"] != pytest.approx(plain["val_loss"], rel=1e-6)
    assert results["history"][-1]["val_loss"] == pytest.approx(with_tta["val_loss"], rel=1e-6)
    assert trainer.evaluate(val)["val_loss"] == pytest.approx(with_tta["val_loss"], rel=1e-6)  # after fit: TTA
    assert results["test"]["test_loss"] == pytest.approx(trainer.evaluate(run.test_data, prefix="test",
                                                                          forward=tta)["test_loss"], rel=1e-6)
