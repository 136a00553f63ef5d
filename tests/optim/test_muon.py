"""HybridMuon against torch.optim.Muon itself: hidden matrices, conv weights as matrices in either
memory layout, checkpoints across layouts, and the hybrid set-up from create_optimizer."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from trickbag.optim import HybridMuon, create_optimizer, muon_parameters


def _grads(gen, shapes, steps):
    return [[torch.randn(s, generator=gen) for s in shapes] for _ in range(steps)]


def test_linear_hidden_layers_equal_torchs_muon():
    gen = torch.Generator().manual_seed(0)
    ws = [torch.randn(6, 5, generator=gen), torch.randn(7, 6, generator=gen)]
    ours = [nn.Parameter(w.clone()) for w in ws]
    ref = [nn.Parameter(w.clone()) for w in ws]
    opt = HybridMuon(ours, None, lr=0.05, weight_decay=0.01, momentum=0.9)
    torch_opt = torch.optim.Muon(ref, lr=0.05, weight_decay=0.01, momentum=0.9)
    for grads in _grads(gen, [(6, 5), (7, 6)], 6):
        for a, b, g in zip(ours, ref, grads):
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        torch_opt.step()
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_weights_update_as_their_matrix(channels_last):
    """A conv weight moves exactly as torch's Muon moves the (out, in * k * k) matrix."""
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(8, 3, 3, 3, generator=gen)
    conv = nn.Parameter(w.clone().contiguous(memory_format=torch.channels_last) if channels_last else w.clone())
    matrix = nn.Parameter(w.reshape(8, -1).clone())
    opt = HybridMuon([conv], None, lr=0.1, momentum=0.8)
    ref = torch.optim.Muon([matrix], lr=0.1, momentum=0.8, weight_decay=0.0)
    for (g,) in _grads(gen, [(8, 3, 3, 3)], 5):
        conv.grad = g.clone().contiguous(memory_format=torch.channels_last) if channels_last else g.clone()
        matrix.grad = g.reshape(8, -1).clone()
        opt.step()
        ref.step()
    torch.testing.assert_close(conv.detach().reshape(8, -1), matrix.detach(), rtol=1e-5, atol=1e-6)
    assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 4))


def test_create_optimizer_puts_hidden_matrices_under_muon_and_the_rest_under_aux():
    model = _model()
    muon_names, rest = muon_parameters(model)
    assert muon_names == ["3.weight", "6.weight"]  # not the first conv, not the head
    assert "0.weight" in rest and "8.weight" in rest and "1.bias" in rest
    opt = create_optimizer(model, "muon", lr=0.02, weight_decay=0.01,
                           aux={"name": "sgd", "lr": 0.1, "momentum": 0.9})
    assert isinstance(opt, HybridMuon) and isinstance(opt.aux, torch.optim.SGD)
    assert opt.param_groups[0]["params"] == [model[3].weight, model[6].weight]
    every = [p for g in opt.param_groups for p in g["params"]]
    assert len(every) == len(list(model.parameters())) == len({id(p) for p in every})
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    assert opt.param_groups[0]["lr"] == 0.01 and opt.aux.param_groups[0]["lr"] == 0.05  # one schedule, both
    del sched
    with pytest.raises(ValueError, match="unknown argument for muon 'betas'"):
        create_optimizer(model, "muon", lr=0.02, betas=(0.9, 0.99))
    with pytest.raises(ValueError, match="needs the model"):
        create_optimizer(list(model.parameters()), "muon", lr=0.02)


def test_a_checkpoint_moves_between_memory_layouts():
    """Train 3 steps contiguous, save, load into a channels_last copy, train 3 more: the same as
    3 + 3 steps without the move."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 3, 6, 6, generator=gen)

    def make(model):
        return create_optimizer(model, "muon", lr=0.05, aux={"name": "sgd", "lr": 0.05, "momentum": 0.9})

    def train(model, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()

    full = _model()
    opt = make(full)
    train(full, opt, 6)

    first = _model()
    opt1 = make(first)
    train(first, opt1, 3)
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt1.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    second = _model(seed=9).to(memory_format=torch.channels_last)
    second.load_state_dict(saved["model"])
    opt2 = make(second)
    opt2.load_state_dict(saved["opt"])
    train(second, opt2, 3)
    for a, b in zip(full.parameters(), second.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_gradient_hooks_and_the_trainer_see_the_real_parameters():
    from trickbag.optim import attach_grad_clipping

    model = _model()
    opt = create_optimizer(model, "muon", lr=0.02, aux={"name": "sgd", "lr": 0.1})
    seen = []
    opt.register_step_pre_hook(lambda o, a, k: seen.append(sum(p.grad is not None for g in o.param_groups
                                                                 for p in g["params"])))
    attach_grad_clipping(opt, max_norm=1e-3)
    model(torch.randn(2, 3, 6, 6)).sum().backward()
    opt.step()
    assert seen == [len(list(model.parameters()))]
