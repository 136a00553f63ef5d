"""Label smoothing against torch's native label_smoothing, for hard and soft targets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trickbag.losses import LabelSmoothingCrossEntropy, smooth_labels, soft_target_cross_entropy


def test_smooth_labels_formula():
    y = torch.tensor([2, 0])
    out = smooth_labels(y, 4, 0.2)
    expected = torch.tensor([[0.05, 0.05, 0.85, 0.05], [0.85, 0.05, 0.05, 0.05]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out.sum(1), torch.ones(2))


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_hard_labels_equal_native(gen, eps):
    z, y = torch.randn(32, 10, generator=gen), torch.randint(0, 10, (32,), generator=gen)
    crit = LabelSmoothingCrossEntropy(eps)
    torch.testing.assert_close(crit(z, y), F.cross_entropy(z, y, label_smoothing=eps))


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_soft_targets_equal_native_probability_targets(gen, eps):
    z = torch.randn(16, 5, generator=gen)
    soft = torch.softmax(torch.randn(16, 5, generator=gen), dim=1)
    crit = LabelSmoothingCrossEntropy(eps)
    torch.testing.assert_close(crit(z, soft), F.cross_entropy(z, soft, label_smoothing=eps))


def test_mixing_losses_equals_loss_of_mixed_smoothed_targets(gen):
    """Why mixup can mix the loss: smoothed CE is linear in the target."""
    z = torch.randn(8, 6, generator=gen)
    ya, yb = torch.randint(0, 6, (8,), generator=gen), torch.randint(0, 6, (8,), generator=gen)
    lam, crit = 0.3, LabelSmoothingCrossEntropy(0.1)
    mixed_loss = lam * crit(z, ya) + (1 - lam) * crit(z, yb)
    mixed_target = lam * F.one_hot(ya, 6).float() + (1 - lam) * F.one_hot(yb, 6).float()
    torch.testing.assert_close(mixed_loss, crit(z, mixed_target))


def test_soft_target_cross_entropy_reference(gen):
    z, p = torch.randn(4, 3, generator=gen), torch.softmax(torch.randn(4, 3, generator=gen), 1)
    expected = -(p.double() * torch.log_softmax(z.double(), 1)).sum(1)
    torch.testing.assert_close(soft_target_cross_entropy(z, p, "none").double(), expected)


def test_bad_input():
    with pytest.raises(ValueError, match=r"smoothing must be in \[0.0, 1.0\), got 1.0"):
        LabelSmoothingCrossEntropy(1.0)
    with pytest.raises(ValueError, match=r"smoothing must be in .* got -0.1"):
        smooth_labels(torch.tensor([0]), 3, -0.1)
    with pytest.raises(ValueError, match=r"target classes must be in 0..2, got values in 0..5"):
        smooth_labels(torch.tensor([0, 5]), 3, 0.1)
    with pytest.raises(ValueError, match=r"soft targets must have shape \(N, 3\)"):
        smooth_labels(torch.rand(2, 4), 3, 0.1)
    with pytest.raises(ValueError, match="same shape"):
        soft_target_cross_entropy(torch.randn(2, 3), torch.rand(2, 4))


def test_weighted_label_smoothing_matches_torch_for_hard_and_soft_targets(gen):
    z = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=gen)
    w = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    crit = LabelSmoothingCrossEntropy(0.1, weight=w, reduction="sum", ignore_index=2)
    torch.testing.assert_close(crit(z, y), F.cross_entropy(z, y, weight=w, reduction="sum", ignore_index=2,
                                                           label_smoothing=0.1))
    soft = torch.softmax(torch.randn(6, 4, generator=gen, dtype=torch.float64), 1)
    expected = -(smooth_labels(soft, 4, 0.1) * w * F.log_softmax(z, 1)).sum()  # the definition, by hand
    torch.testing.assert_close(crit(z, soft), expected)
    assert "weight" in dict(crit.named_buffers())  # moves with .to(device) and lands in state dicts
    with pytest.raises(ValueError, match="weight must be a 1-d tensor"):
        LabelSmoothingCrossEntropy(0.1, weight=[1.0, 2.0])
