"""Weight penalties: the right parameters, and L2 equal to SGD's weight decay."""

from __future__ import annotations

import pytest
import torch

from trickbag.losses import l1_penalty, l2_penalty, penalized_parameters


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6 * 6, 2))


def test_biases_and_norm_parameters_are_left_out():
    model = _model()
    chosen = penalized_parameters(model)
    assert [tuple(p.shape) for p in chosen] == [(4, 3, 3, 3), (2, 144)]
    assert len(penalized_parameters(model, include_bias_and_norm=True)) == 6


def test_values_match_definitions():
    model = _model()
    w = [model[0].weight, model[3].weight]
    torch.testing.assert_close(l1_penalty(model, 0.01), 0.01 * sum(p.abs().sum() for p in w))
    torch.testing.assert_close(l2_penalty(model, 0.01), 0.005 * sum((p * p).sum() for p in w))


def test_l2_penalty_step_equals_sgd_weight_decay():
    a, b = _model(), _model()
    x = torch.randn(5, 3, 8, 8)
    opt_a = torch.optim.SGD(penalized_parameters(a), lr=0.1)
    opt_b = torch.optim.SGD(penalized_parameters(b), lr=0.1, weight_decay=0.05)
    (a(x).sum() + l2_penalty(a, 0.05)).backward()
    b(x).sum().backward()
    opt_a.step()
    opt_b.step()
    for pa, pb in zip(penalized_parameters(a), penalized_parameters(b)):
        torch.testing.assert_close(pa, pb)


def test_negative_weight_is_rejected():
    with pytest.raises(ValueError, match="weight must be >= 0"):
        l2_penalty(_model(), -1.0)
