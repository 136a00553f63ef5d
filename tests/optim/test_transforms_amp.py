"""The gradient hooks in a user's own loop with ``torch.amp.GradScaler``: fp16 with fused,
foreach and for-loop optimizers updates as the fp32 loop does, because the hooks act on the true
gradients (a fused optimizer's kernel unscales only after the step pre-hooks ran)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trickbag.optim import attach_grad_clipping, attach_gradient_centralization, attach_gradient_noise

GRAD = torch.tensor([[3e-3, 4e-3, -1e-3], [2e-3, -5e-3, 6e-3]])  # the loss's gradient w.r.t. w

HOOKS = {
    "clip-norm": lambda opt: [attach_grad_clipping(opt, max_norm=1e-3)],
    "clip-value": lambda opt: [attach_grad_clipping(opt, max_value=3.5e-3)],
    "noise": lambda opt: [attach_gradient_noise(opt, eta=1e-6, seed=7)],
    "centralisation": lambda opt: [attach_gradient_centralization(opt)],
    "centralisation+clip-norm": lambda opt: [attach_gradient_centralization(opt),
                                             attach_grad_clipping(opt, max_norm=2e-3)],
}
IMPLS = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}


def _loop(precision: str, impl: str, hooks: str, *, device: str = "cpu", name: str = "sgd",
          steps: int = 3) -> torch.Tensor:
    """A hand-written loop: autocast, scaler.scale(loss).backward(), scaler.step, scaler.update."""
    w = nn.Parameter(torch.zeros(2, 3, device=device))
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    opt = cls([w], lr=1.0 if name == "sgd" else 1e-2, **IMPLS[impl])
    HOOKS[hooks](opt)
    scaler = torch.amp.GradScaler(device, init_scale=2.0**16) if precision == "fp16" else None
    x, target = torch.eye(3, device=device), 3 * GRAD.T.to(device)
    for _ in range(steps):
        with torch.autocast(device, dtype=torch.float16, enabled=scaler is not None):
            out = x @ w.T
        loss = (out.float() * target).sum() / 3  # gradient GRAD whatever w is
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        opt.zero_grad(set_to_none=True)
    return -w.detach().cpu()


def test_the_issue_example_clips_the_true_gradient():
    """SGD lr 1, max_norm 1e-3, gradient [3e-3, 4e-3]: the update is [6e-4, 8e-4], fused or not
    (fused gave [9.2e-9, 1.2e-8] before the fix: the clip acted on the gradient times 2**16)."""
    for fused in (True, False):
        w = nn.Parameter(torch.zeros(2))
        opt = torch.optim.SGD([w], lr=1.0, fused=fused)
        attach_grad_clipping(opt, max_norm=1e-3)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
        scaler.scale((w * torch.tensor([3e-3, 4e-3])).sum()).backward()
        scaler.step(opt)
        scaler.update()
        torch.testing.assert_close(-w.detach(), torch.tensor([6e-4, 8e-4]), rtol=1e-3, atol=0)  # clip_grad_norm_ divides by norm + 1e-6


@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("hooks", sorted(HOOKS))
def test_fp16_loop_equals_the_fp32_loop(hooks, impl):
    expected = _loop("fp32", "for-loop", hooks)
    got = _loop("fp16", impl, hooks)
    # fp16 autocast rounds the forward pass (the gradient is exact here), nothing more
    torch.testing.assert_close(got, expected, rtol=2e-3, atol=1e-7)
    if hooks == "clip-norm":
        assert got.norm().item() == pytest.approx(3e-3, rel=2e-3)  # three steps of norm 1e-3


@pytest.mark.parametrize("impl", ["fused", "foreach"])
def test_fp16_adam_loop_equals_the_fp32_loop(impl):
    """Adam divides by the gradient's scale, so clipping by value shows through its update only
    once the clipped and unclipped coordinates' histories differ: compare many steps."""
    expected = _loop("fp32", "for-loop", "clip-value", name="adam", steps=5)
    got = _loop("fp16", impl, "clip-value", name="adam", steps=5)
    torch.testing.assert_close(got, expected, rtol=2e-3, atol=1e-7)


def _noisy_updates(skip_first: bool) -> torch.Tensor:
    w = nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([w], lr=1.0, fused=True)
    attach_grad_clipping(opt, max_norm=10.0)
    attach_gradient_noise(opt, eta=1.0, gamma=1.0, seed=0)  # counts its own calls
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    grads = ([torch.tensor([float("inf"), 1.0])] if skip_first else []) + [torch.tensor([1.0, 2.0])]
    for g in grads:
        scaler.scale((w * g).sum()).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(g).all():
            assert torch.equal(w.detach(), torch.zeros(2))  # skipped
    return w.detach().clone()


def test_a_skipped_step_runs_no_hook_and_the_noise_counter_stays():
    """With inf gradients GradScaler skips the update; a fused optimizer's step is still called
    (its kernel skips), and the hooks must behave as when step is not called at all: the next
    step draws update 0's noise, as it does without the skipped step."""
    torch.testing.assert_close(_noisy_updates(True), _noisy_updates(False), rtol=0, atol=0)


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("hooks", sorted(HOOKS))
def test_fp16_loop_equals_the_fp32_loop_on_cuda(hooks, impl, name, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # the fp32 reference without TF32
    expected = _loop("fp32", "for-loop", hooks, device="cuda", name=name)
    got = _loop("fp16", impl, hooks, device="cuda", name=name)
    torch.testing.assert_close(got, expected, rtol=2e-3, atol=1e-7)
