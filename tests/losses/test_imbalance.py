"""Class-balanced weights and losses against the closed form; logit adjustment against its
definition; the tricks that count classes from the data, in the trainer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trickbag.losses import (
    ClassBalancedLoss,
    LogitAdjustedLoss,
    adjust_logits,
    class_balanced_loss,
    class_balanced_weights,
    class_counts,
    class_priors,
    focal_loss,
    logit_adjusted_cross_entropy,
)


@pytest.mark.parametrize("beta", [0.0, 0.9, 0.99, 0.999, 0.9999])
def test_weights_match_the_effective_number_closed_form(beta):
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    w = class_balanced_weights(counts, beta)
    expected = [(1 - beta) / (1 - beta**n) for n in counts]  # 1 / E_n, E_n = (1 - beta^n) / (1 - beta)
    total = sum(expected)
    expected = torch.tensor([len(counts) * e / total for e in expected], dtype=torch.float64)
    assert torch.allclose(w.double(), expected, rtol=1e-6)
    assert abs(w.sum().item() - 10) < 1e-4
    assert torch.all(w[1:] >= w[:-1])  # rarer classes weigh more


def test_weights_limits_and_errors():
    counts = torch.tensor([400, 100, 10])
    assert torch.allclose(class_balanced_weights(counts, 0.0), torch.ones(3))
    inv = 1.0 / counts.double()
    assert torch.allclose(class_balanced_weights(counts, 1 - 1e-9).double(), inv * 3 / inv.sum(), rtol=1e-5)
    with pytest.raises(ValueError, match=r"beta must be in \[0.0, 1.0\), got 1.0"):
        class_balanced_weights(counts, 1.0)
    with pytest.raises(ValueError, match=r"classes \[1\] have \[0.0\]"):
        class_balanced_weights([3, 0, 2], 0.9)
    assert class_counts(torch.tensor([2, 2, 0]), 4).tolist() == [1, 0, 2, 0]


def test_class_balanced_losses_against_their_definitions(gen):
    z = torch.randn(32, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (32,), generator=gen)
    w = class_balanced_weights([50, 30, 10, 5, 2], 0.99).double()
    # cross-entropy: the sum equals torch's weighted sum; the mean averages over examples
    assert torch.allclose(class_balanced_loss(z, y, w, reduction="sum"), F.cross_entropy(z, y, weight=w, reduction="sum"))
    assert torch.allclose(class_balanced_loss(z, y, w), F.cross_entropy(z, y, weight=w, reduction="sum") / 32)
    focal = class_balanced_loss(z, y, w, loss="focal", gamma=2.0, reduction="none")
    assert torch.allclose(focal, w[y] * focal_loss(z, y, gamma=2.0, reduction="none"))
    onehot = F.one_hot(y, 5).double()
    bce = F.binary_cross_entropy_with_logits(z, onehot, reduction="none").sum(1)
    assert torch.allclose(class_balanced_loss(z, y, w, loss="sigmoid", reduction="none"), w[y] * bce)
    p = torch.sigmoid(z)
    pt = p * onehot + (1 - p) * (1 - onehot)
    sfl = (-(1 - pt) ** 2 * pt.log()).sum(1)
    assert torch.allclose(class_balanced_loss(z, y, w, loss="sigmoid_focal", reduction="none"), w[y] * sfl)
    with pytest.raises(ValueError, match="statistics for 5 classes but the logits have 4 columns"):
        class_balanced_loss(z[:, :4], y.clamp(max=3), w)
    crit = ClassBalancedLoss([50, 30, 10, 5, 2], beta=0.99, loss="focal", gamma=1.0)
    assert torch.allclose(crit(z, y), class_balanced_loss(z, y, w, loss="focal", gamma=1.0))


def test_logit_adjustment_against_its_definition(gen):
    z = torch.randn(16, 3, generator=gen)
    y = torch.randint(0, 3, (16,), generator=gen)
    counts = [700, 200, 100]
    pi = class_priors(counts)
    assert torch.allclose(pi, torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64))
    for tau in (0.0, 1.0, 2.0):
        shifted = z + tau * pi.float().log()
        manual = -(shifted.log_softmax(1).gather(1, y[:, None])).mean()
        assert torch.allclose(logit_adjusted_cross_entropy(z, y, pi.float(), tau=tau), manual, atol=1e-6)
        assert torch.allclose(LogitAdjustedLoss(counts, tau=tau)(z, y), manual, atol=1e-6)
    # post-hoc: the uniform-prior optimum of a prior-shifted model
    assert torch.allclose(adjust_logits(z + pi.float().log(), pi.float()), z, atol=1e-6)


def test_class_balanced_and_logit_adjustment_tricks_count_the_training_data():
    from trickbag.data import DeviceLoader, long_tailed, synthetic
    from trickbag.losses import FocalLoss
    from trickbag.train import Trainer
    from trickbag.train.callbacks import Callback, ClassBalanced, LogitAdjustment

    s = synthetic(num_train=400, num_test=64, shape=(8,), num_classes=4, seed=2)
    train = long_tailed(s.train, 10)
    counts = torch.bincount(train.targets).tolist()
    assert counts[0] / counts[-1] == 10
    seen = []

    class Spy(Callback):
        def on_fit_start(self, state):
            seen.append(state.criterion)

    t = Trainer(torch.nn.Linear(8, 4), DeviceLoader(train, 32), loss=FocalLoss(gamma=1.5),
                callbacks=[ClassBalanced(beta=0.99), Spy()], epochs=1, progress=False)
    t.fit()
    crit = seen[0]
    assert crit.loss == "focal" and crit.gamma == 1.5
    assert torch.allclose(crit.weights, class_balanced_weights(counts, 0.99))
    assert isinstance(t.state.criterion, FocalLoss)  # restored after fit
    la = Trainer(torch.nn.Linear(8, 4), DeviceLoader(train, 32), callbacks=[LogitAdjustment(tau=1.0)], epochs=1,
                 progress=False)
    la.fit()
    with pytest.raises(ValueError, match="logit_adjustment replaces a cross-entropy loss"):
        Trainer(torch.nn.Linear(8, 4), DeviceLoader(train, 32), loss=FocalLoss(), callbacks=[LogitAdjustment()],
                epochs=1, progress=False).fit()
