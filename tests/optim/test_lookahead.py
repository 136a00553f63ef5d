"""Lookahead against a hand-written reference, with schedulers, hooks and resume."""

from __future__ import annotations

import io

import pytest
import torch

from trickbag.optim import Lookahead, attach_grad_clipping
from trickbag.schedules import linear_decay, to_lr_scheduler


def grads(step, shape):
    return torch.sin(torch.arange(torch.Size(shape).numel(), dtype=torch.float32) + step).reshape(shape)


def test_matches_reference_update():
    k, alpha, lr = 3, 0.4, 0.1
    w = torch.nn.Parameter(torch.ones(5))
    opt = Lookahead(torch.optim.SGD([w], lr=lr), k=k, alpha=alpha)
    fast, slow = torch.ones(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64)
    for step in range(10):
        g = grads(step, (5,))
        w.grad = g.clone()
        opt.step()
        fast -= lr * g.double()
        if (step + 1) % k == 0:
            slow += alpha * (fast - slow)
            fast = slow.clone()
        torch.testing.assert_close(w.data.double(), fast)


def test_scheduler_and_step_hooks_reach_the_inner_optimizer():
    w = torch.nn.Parameter(torch.zeros(2))
    inner = torch.optim.SGD([w], lr=1.0)
    opt = Lookahead(inner, k=100)
    sched = to_lr_scheduler(opt, linear_decay(10))
    attach_grad_clipping(opt, max_norm=1.0)
    w.grad = torch.tensor([30.0, 40.0])
    opt.step()
    sched.step()
    torch.testing.assert_close(w.data, torch.tensor([-0.6, -0.8]))
    assert inner.param_groups[0]["lr"] == pytest.approx(0.9)


def test_state_dict_resume_equals_uninterrupted():
    def make(w):
        return Lookahead(torch.optim.Adam([w], lr=0.05), k=4, alpha=0.5)

    w1 = torch.nn.Parameter(torch.ones(6))
    opt1 = make(w1)
    for s in range(6):
        w1.grad = grads(s, (6,))
        opt1.step()
    buf = io.BytesIO()
    torch.save({"w": w1.detach(), "opt": opt1.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    w2 = torch.nn.Parameter(saved["w"].clone())
    opt2 = make(w2)
    opt2.load_state_dict(saved["opt"])
    for s in range(6, 13):
        w1.grad = grads(s, (6,))
        w2.grad = grads(s, (6,))
        opt1.step()
        opt2.step()
    torch.testing.assert_close(w1, w2, rtol=0, atol=0)


def test_load_state_dict_restores_k_and_alpha():
    """A resume with a differently built Lookahead continues with the checkpoint's k and alpha,
    as torch optimizers restore lr and betas: the same trajectory as the uninterrupted run."""
    w1 = torch.nn.Parameter(torch.ones(4))
    opt1 = Lookahead(torch.optim.SGD([w1], lr=0.1), k=3, alpha=0.3)
    for s in range(4):
        w1.grad = grads(s, (4,))
        opt1.step()
    w2 = torch.nn.Parameter(w1.detach().clone())
    opt2 = Lookahead(torch.optim.SGD([w2], lr=0.1), k=5, alpha=0.8)
    opt2.load_state_dict(opt1.state_dict())
    assert (opt2.k, opt2.alpha) == (3, 0.3)
    for s in range(4, 11):
        for w, opt in ((w1, opt1), (w2, opt2)):
            w.grad = grads(s, (4,))
            opt.step()
    torch.testing.assert_close(w1, w2, rtol=0, atol=0)
    bad = opt1.state_dict() | {"k": 0}
    before = opt2.state_dict()
    with pytest.raises(ValueError, match="k must be"):
        opt2.load_state_dict(bad)
    assert opt2.k == 3 and opt2.lookahead_steps == before["lookahead_steps"]  # nothing changed


def test_bad_arguments():
    w = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        Lookahead(torch.optim.SGD(w, lr=0.1), k=0)
    with pytest.raises(ValueError, match=r"alpha must be in \(0.0, 1.0\], got 1.5"):
        Lookahead(torch.optim.SGD(w, lr=0.1), alpha=1.5)
    with pytest.raises(ValueError, match="wraps a torch.optim.Optimizer"):
        Lookahead("sgd")
