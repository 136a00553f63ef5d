"""Gradient centralisation and clipping hooks against per-parameter references."""

from __future__ import annotations

import pytest
import torch

from trickbag.optim import attach_grad_clipping, attach_gradient_centralization, centralize_gradients_


def _params(gen):
    shapes = [(8, 3, 3, 3), (8,), (16, 8, 3, 3), (10, 64), (16, 8, 1, 1), (5, 7)]
    params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    return params


def reference(g):
    if g.dim() < 2:
        return g.clone()
    return g - g.double().mean(dim=tuple(range(1, g.dim())), keepdim=True).float()


@pytest.mark.parametrize("conv_only", [False, True])
def test_centralization_matches_per_parameter_reference(gen, conv_only):
    params = _params(gen)
    expected = [reference(p.grad) if (p.dim() == 4 or not conv_only) else p.grad.clone() for p in params]
    centralize_gradients_(params, conv_only=conv_only)
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-5, atol=1e-6)


def test_hook_centralizes_before_the_step_and_can_be_removed(gen):
    params = _params(gen)
    opt = torch.optim.SGD(params, lr=1.0)
    handle = attach_gradient_centralization(opt)
    expected = [-reference(p.grad) for p in params]
    opt.step()
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.data, e, rtol=1e-5, atol=1e-6)
    handle.remove()
    before = [p.data.clone() for p in params]
    opt.step()  # no hook: plain SGD
    for p, b in zip(params, before):
        torch.testing.assert_close(p.data, b - p.grad)


def test_clipping_hook_equals_torch_clipping(gen):
    params = _params(gen)
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for c, p in zip(copies, params):
        c.grad = p.grad.clone()
    torch.nn.utils.clip_grad_value_(copies, 1.5)
    torch.nn.utils.clip_grad_norm_(copies, 2.0)
    expected = [c.grad for c in copies]
    opt = torch.optim.SGD(params, lr=1.0)
    attach_grad_clipping(opt, max_norm=2.0, max_value=1.5)
    opt.step()
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.data, -e)
    total = torch.linalg.vector_norm(torch.stack([p.data.norm() for p in params]))
    assert total.item() == pytest.approx(2.0, rel=1e-5)


def test_bad_arguments():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="needs max_norm or max_value"):
        attach_grad_clipping(opt)
    with pytest.raises(ValueError, match="max_norm must be > 0, got -1"):
        attach_grad_clipping(opt, max_norm=-1)
