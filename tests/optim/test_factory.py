"""create_optimizer returns torch's own optimizers with correct groups, and rejects bad names."""

from __future__ import annotations

import warnings

import pytest
import torch

from trickbag.optim import create_optimizer, list_optimizers


def _model():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten(), torch.nn.LazyLinear(2))


@pytest.mark.parametrize("name", [n for n in list_optimizers() if n != "muon"])  # muon: tests/optim/test_muon.py
def test_each_name_gives_the_torch_class(name):
    model = torch.nn.Linear(3, 2)
    opt = create_optimizer(model, name, lr=0.01, weight_decay=0.1)
    expected = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "radam": "RAdam", "nadam": "NAdam",
                "adagrad": "Adagrad", "rmsprop": "RMSprop"}[name]
    assert type(opt) is getattr(torch.optim, expected)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.param_groups[0]["params"][0] is model.weight and opt.param_groups[1]["params"][0] is model.bias


def test_norm_and_bias_can_be_decayed_and_groups_pass_through():
    model = torch.nn.Linear(3, 2)
    opt = create_optimizer(model, "sgd", lr=0.1, weight_decay=0.1, decay_norm_and_bias=True)
    assert len(opt.param_groups) == 1
    opt = create_optimizer([{"params": [model.weight], "lr": 0.5}], "adam", lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.5


def test_kwargs_reach_the_optimizer():
    opt = create_optimizer(torch.nn.Linear(2, 2), "sgd", lr=0.1, momentum=0.9, nesterov=True)
    assert opt.param_groups[0]["nesterov"] is True and opt.param_groups[0]["momentum"] == 0.9


def test_unknown_names_and_arguments_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamx'; did you mean 'adam'.*Valid: adagrad, adam, adamw"):
        create_optimizer(torch.nn.Linear(2, 2), "adamx", lr=0.1)
    with pytest.raises(ValueError, match=r"unknown argument for sgd 'betas'.*Valid: .*momentum.*nesterov"):
        create_optimizer(torch.nn.Linear(2, 2), "sgd", lr=0.1, betas=(0.9, 0.99))
    with pytest.raises(ValueError, match="lr must be > 0, got 0"):
        create_optimizer(torch.nn.Linear(2, 2), "sgd", lr=0)
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        create_optimizer(frozen, "sgd", lr=0.1)


def test_fused_requests_on_cpu():
    with pytest.warns(UserWarning, match="falling back to torch.optim.RAdam"):
        opt = create_optimizer(torch.nn.Linear(2, 2), "radam", lr=1e-3, fused=True)
    assert type(opt) is torch.optim.RAdam
    with pytest.raises(ValueError, match="torch has no fused nadam; fused=True is valid for: adagrad, adam, adamw, radam, sgd"):
        create_optimizer(torch.nn.Linear(2, 2), "nadam", lr=1e-3, fused=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_optimizer(torch.nn.Linear(2, 2), "adamw", lr=1e-3)  # default: no warning on CPU


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "adagrad"])
def test_fused_cpu_kernels_are_used_and_equal_the_foreach_path(name):
    """torch has fused CPU kernels for these; fused=True must use them (it raised before)."""
    torch.manual_seed(0)
    a = torch.nn.Linear(5, 3)
    b = torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    extra = {"momentum": 0.9} if name == "sgd" else {}
    fused = create_optimizer(a, name, lr=0.05, weight_decay=0.01, fused=True, **extra)
    plain = create_optimizer(b, name, lr=0.05, weight_decay=0.01, **extra)
    assert fused.defaults.get("fused") is True and not plain.defaults.get("fused")
    x = torch.randn(16, 5)
    for _ in range(5):
        for model, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_fused_on_parameters_torch_cannot_fuse_names_them():
    ints = torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"torch's fused adamw does not take these parameters \(cpu complex64\)"):
        create_optimizer([ints], "adamw", lr=1e-3, fused=True)


@pytest.mark.cuda
def test_fused_kernels_on_cuda():
    model = torch.nn.Linear(4, 4).cuda()
    assert create_optimizer(model, "adamw", lr=1e-3).defaults.get("fused") is True
    from trickbag.optim import FusedRAdam

    assert type(create_optimizer(model, "radam", lr=1e-3, fused=True)) is FusedRAdam
    # Adagrad's fused kernel is CPU-only: by default on CUDA it falls back, on request it says why
    assert not create_optimizer(model, "adagrad", lr=1e-3).defaults.get("fused")
    with pytest.raises(ValueError, match="torch's fused adagrad does not take these parameters"):
        create_optimizer(model, "adagrad", lr=1e-3, fused=True)
