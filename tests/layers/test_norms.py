"""Norm factory and surgery: shapes, training, and torch's own spectral norm."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trickbag.layers import apply_group_norm, apply_spectral_norm, group_count, make_norm


def test_group_count_is_the_largest_divisor():
    for c, g in [(64, 32), (48, 32), (30, 32), (7, 32), (96, 16)]:
        k = group_count(c, g)
        assert c % k == 0 and k <= g
        assert all(c % d for d in range(k + 1, min(c, g) + 1))


def test_group_norm_surgery_keeps_shapes_and_trains(gen):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 48, 3, padding=1), nn.BatchNorm2d(48), nn.ReLU(),
                          nn.Conv2d(48, 20, 3, padding=1), nn.BatchNorm2d(20), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(20, 3))
    with torch.no_grad():
        model[1].weight.fill_(0.5)
    x, y = torch.randn(8, 3, 8, 8, generator=gen), torch.randint(0, 3, (8,), generator=gen)
    shape = model(x).shape
    apply_group_norm(model, groups=32)
    assert isinstance(model[1], nn.GroupNorm) and model[1].num_groups == 24
    assert isinstance(model[4], nn.GroupNorm) and model[4].num_groups == 20
    assert torch.all(model[1].weight == 0.5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model(x).shape == shape
    model(x[:1])  # batch of one: fine without BatchNorm
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_make_norm_kinds_and_errors():
    x = torch.randn(4, 16, 5, 5)
    for kind in ("batch", "group", "instance", "layer", "none"):
        assert make_norm(kind, 16)(x).shape == x.shape
    torch.testing.assert_close(make_norm("layer", 16)(x), nn.functional.layer_norm(x, x.shape[1:]), rtol=1e-4, atol=1e-5)
    assert make_norm("layer", 16, dim=1)(torch.randn(4, 16)).shape == (4, 16)
    with pytest.raises(ValueError, match="unknown norm 'bn'"):
        make_norm("bn", 16)
    with pytest.raises(ValueError, match="instance norm needs feature maps"):
        make_norm("instance", 16, dim=1)


def test_spectral_norm_makes_largest_singular_value_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    apply_spectral_norm(model, n_power_iterations=5)
    for _ in range(20):
        model(torch.randn(3, 10))
    for layer in (model[0], model[2]):
        sigma = torch.linalg.matrix_norm(layer.weight.detach(), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="no layer of type"):
        apply_spectral_norm(nn.Sequential(nn.ReLU()))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_group_norm_surgery_matches_the_models_dtype(gen, dtype):
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()).to(dtype)
    apply_group_norm(net, groups=4)
    assert net[1].weight.dtype == dtype and net[1].bias.dtype == dtype
    x = torch.randn(2, 3, 6, 6, generator=gen).to(dtype)
    out = net(x)  # float64 crashed with "mixed dtype (CPU)"
    assert out.dtype == dtype
    ref = F.relu(F.group_norm(F.conv2d(x.double(), net[0].weight.double(), net[0].bias.double(), padding=1), 4))
    tol = {torch.float64: 1e-12, torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype]
    torch.testing.assert_close(out.double(), ref, atol=tol, rtol=tol)


def test_group_norm_surgery_keeps_frozen_parameters_frozen_and_the_mode():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.BatchNorm2d(8))
    net[1].requires_grad_(False)
    net[2].bias.requires_grad_(False)
    net.eval()
    apply_group_norm(net, groups=4)
    assert not net[1].weight.requires_grad and not net[1].bias.requires_grad
    assert net[2].weight.requires_grad and not net[2].bias.requires_grad
    assert not net[1].training
