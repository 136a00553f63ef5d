"""Gradient centralisation, clipping and noise hooks against per-parameter and closed-form references."""

from __future__ import annotations

import pytest
import torch

from trickbag.optim import (
    add_gradient_noise_,
    attach_grad_clipping,
    attach_gradient_centralization,
    attach_gradient_noise,
    centralize_gradients_,
    gradient_noise_std,
)


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


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_centralization_keeps_each_dtype_and_float64_precision(gen, dtype):
    params = [torch.nn.Parameter(p.detach().to(dtype)) for p in _params(gen)]
    for p in params:
        p.grad = (torch.randn(p.shape, generator=gen, dtype=torch.float64) * 1e3 + 7.0).to(dtype)
    exact = [p.grad.double() - p.grad.double().mean(dim=tuple(range(1, p.dim())), keepdim=True) if p.dim() >= 2
             else p.grad.double() for p in params]
    centralize_gradients_(params)
    for p, e in zip(params, exact):
        assert p.grad.dtype == dtype
        if dtype == torch.float64:
            torch.testing.assert_close(p.grad, e, rtol=0, atol=1e-11)
        else:  # one rounding of the result to the gradient's dtype
            torch.testing.assert_close(p.grad.double(), e, rtol=2 * torch.finfo(dtype).eps, atol=torch.finfo(dtype).eps * 1e3)


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


def test_noise_std_follows_the_papers_schedule():
    # sigma_t^2 = eta / (1 + t)^gamma (Neelakantan et al. 2015)
    for eta, gamma, t in [(0.3, 0.55, 0), (0.01, 0.55, 10), (1.0, 0.55, 5000), (1.0, 0.0, 99)]:
        assert gradient_noise_std(t, eta=eta, gamma=gamma) == pytest.approx((eta / (1 + t) ** gamma) ** 0.5, rel=1e-12)
    assert gradient_noise_std(1000) < gradient_noise_std(10) < gradient_noise_std(0)


def test_noise_is_the_generators_normal_draw_scaled_by_std(gen):
    params = _params(gen)
    before = [p.grad.clone() for p in params]
    add_gradient_noise_(params, std=0.25, generator=torch.Generator().manual_seed(7))
    draw = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(7))
    for p, b, n in zip(params, before, draw.split([p.numel() for p in params])):
        torch.testing.assert_close(p.grad, b + 0.25 * n.view_as(b), rtol=0, atol=1e-6)


def test_noise_has_the_requested_spread_and_skips_missing_gradients():
    w, skip = torch.nn.Parameter(torch.zeros(400_000)), torch.nn.Parameter(torch.zeros(3))
    w.grad = torch.zeros_like(w)
    add_gradient_noise_([w, skip], std=0.1, generator=torch.Generator().manual_seed(0))
    assert skip.grad is None
    assert w.grad.mean().item() == pytest.approx(0.0, abs=1e-3)  # 5 standard errors
    assert w.grad.std().item() == pytest.approx(0.1, rel=0.01)


def test_seeded_hook_anneals_repeats_and_leaves_the_global_rng_alone():
    def steps(n, seed=0):
        w = torch.nn.Parameter(torch.zeros(200_000))
        opt = torch.optim.SGD([w], lr=1.0)
        handle = attach_gradient_noise(opt, eta=0.3, gamma=0.55, seed=seed)
        moves = []
        for _ in range(n):
            before = w.detach().clone()
            w.grad = torch.zeros_like(w)
            opt.step()
            moves.append(before - w.detach())
        handle.remove()
        return moves

    torch.manual_seed(123)
    expected_global = torch.rand(3)
    torch.manual_seed(123)
    a = steps(3)
    assert torch.equal(torch.rand(3), expected_global)  # the seeded hook drew nothing from it
    b = steps(3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[1])  # fresh noise every update
    assert not torch.equal(steps(1, seed=1)[0], a[0])
    for t, move in enumerate(a):
        assert move.std().item() == pytest.approx(gradient_noise_std(t, eta=0.3), rel=0.01)


def test_hook_reads_the_step_it_is_given_and_can_be_removed():
    step = [1000]
    w = torch.nn.Parameter(torch.zeros(200_000))
    opt = torch.optim.SGD([w], lr=1.0)
    handle = attach_gradient_noise(opt, eta=1.0, seed=0, step_fn=lambda: step[0])
    w.grad = torch.zeros_like(w)
    opt.step()
    assert w.detach().std().item() == pytest.approx(gradient_noise_std(1000, eta=1.0), rel=0.01)
    handle.remove()
    before = w.detach().clone()
    w.grad = torch.zeros_like(w)
    opt.step()
    assert torch.equal(w.detach(), before)


def test_noise_rejects_bad_values():
    with pytest.raises(ValueError, match="eta"):
        gradient_noise_std(0, eta=0.0)
    with pytest.raises(ValueError, match="step"):
        gradient_noise_std(-1)
    with pytest.raises(ValueError, match="std"):
        add_gradient_noise_([], std=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        attach_gradient_noise(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), gamma=-0.5)
