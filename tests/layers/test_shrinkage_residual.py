"""Soft thresholding, shrinkage blocks, residual blocks and activations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trickbag.layers import ResidualBlock, ShrinkageResidualBlock, SoftThreshold, make_activation, soft_threshold


def test_soft_threshold_formula(gen):
    x = torch.randn(1000, generator=gen, dtype=torch.float64)
    tau = 0.3
    expected = torch.where(x > tau, x - tau, torch.where(x < -tau, x + tau, torch.zeros_like(x)))
    torch.testing.assert_close(soft_threshold(x, tau), expected)
    with pytest.raises(ValueError, match="tau must be >= 0"):
        soft_threshold(x, -1.0)


@pytest.mark.parametrize("shape", [(8, 6), (8, 6, 10), (8, 6, 5, 5)])
def test_learned_thresholds_shrink_and_stay_nonnegative(gen, shape):
    layer = SoftThreshold(6)
    for _ in range(3):  # also after some training steps that push the sub-network around
        x = torch.randn(shape, generator=gen) * 3
        y = layer(x)
        tau = layer.thresholds(x)
        assert (tau >= 0).all()
        assert (tau <= x.abs().flatten(2).mean(2) + 1e-6).all() if x.dim() > 2 else (tau <= x.abs() + 1e-6).all()
        assert (y.abs() <= x.abs() + 1e-6).all()
        y.pow(2).sum().backward()
        with torch.no_grad():
            for p in layer.parameters():
                p -= 0.5 * p.grad
                p.grad = None


def test_shrinkage_block_shapes_and_gradient(gen):
    block = ShrinkageResidualBlock(4, 8, stride=2)
    x = torch.randn(3, 4, 8, 8, generator=gen, requires_grad=True)
    y = block(x)
    assert y.shape == (3, 8, 4, 4)
    y.sum().backward()
    assert x.grad.abs().sum() > 0


def test_zero_initialised_block_is_identity_and_projection_shapes(gen):
    block = ResidualBlock(6, 6, zero_init_last=True).eval()
    x = torch.rand(2, 6, 7, 7, generator=gen)
    assert torch.equal(block(x), x)
    no_norm = ResidualBlock(6, 6, norm="none", zero_init_last=True).eval()
    assert torch.equal(no_norm(x), x)
    proj = ResidualBlock(6, 12, stride=2, norm="group")
    assert proj(x).shape == (2, 12, 4, 4)
    assert isinstance(proj.shortcut[0], nn.Conv2d)
    assert not torch.equal(ResidualBlock(6, 6).eval()(x), x)


def test_make_activation_names():
    x = torch.linspace(-3, 3, 13)
    assert torch.equal(make_activation("relu")(x), torch.relu(x))
    torch.testing.assert_close(make_activation("swish")(x), x * torch.sigmoid(x))
    torch.testing.assert_close(make_activation("mish")(x), x * torch.tanh(nn.functional.softplus(x)))
    assert isinstance(make_activation("soft_threshold", channels=4), SoftThreshold)
    with pytest.raises(ValueError, match="unknown activation 'rellu'; did you mean 'relu'"):
        make_activation("rellu")
    with pytest.raises(ValueError, match="needs channels"):
        make_activation("soft_threshold")


def test_soft_threshold_trains_on_a_batch_of_one(gen):
    """A last batch of one (drop_last=False) used to crash BatchNorm1d in training."""
    layer = SoftThreshold(6)
    layer.eval()
    x = torch.randn(1, 6, 4, 4, generator=gen)
    expected = layer(x)  # eval mode: the running statistics
    layer.train()
    stats = layer.net[1].running_mean.clone()
    out = layer(x)
    torch.testing.assert_close(out, expected)  # the same normalisation, by the running statistics
    assert torch.equal(layer.net[1].running_mean, stats)  # one example does not move them
    out.sum().backward()
    assert layer.net[0].weight.grad is not None and torch.isfinite(layer.net[0].weight.grad).all()
    block = ShrinkageResidualBlock(3, 6).train()
    block(torch.randn(1, 3, 5, 5, generator=gen)).sum().backward()
