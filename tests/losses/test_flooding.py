"""Flooding: the value is |J - b| + b and the gradient flips sign below b."""

from __future__ import annotations

import pytest
import torch

from trickbag.losses import Flooding, flood


@pytest.mark.parametrize("value, sign", [(0.5, 1.0), (0.01, -1.0)])
def test_flood_value_and_gradient(value, sign):
    loss = torch.tensor(value, requires_grad=True)
    out = flood(loss, 0.1)
    out.backward()
    assert out.item() == pytest.approx(abs(value - 0.1) + 0.1)
    assert loss.grad.item() == sign


def test_flooding_wraps_a_criterion(gen):
    crit = torch.nn.CrossEntropyLoss()
    z, y = torch.randn(4, 3, generator=gen), torch.randint(0, 3, (4,), generator=gen)
    torch.testing.assert_close(Flooding(crit, 0.2)(z, y), flood(crit(z, y), 0.2))
    with pytest.raises(ValueError, match="needs a scalar loss"):
        Flooding(torch.nn.CrossEntropyLoss(reduction="none"), 0.2)(z, y)


def test_negative_level_is_rejected():
    with pytest.raises(ValueError, match="b must be >= 0, got -0.1"):
        flood(torch.tensor(1.0), -0.1)
