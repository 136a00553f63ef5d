"""fp16 with a gradient scaler: step pre-hooks (clipping, noise, centralisation) see the true
gradients with fused and foreach optimizers alike, so the update equals the fp32 run's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trickbag.train import Trainer
from trickbag.train import callbacks as C

GRAD = torch.tensor([[3e-3, 4e-3, -1e-3], [2e-3, -5e-3, 6e-3]])  # the loss's gradient w.r.t. w


class Linear(nn.Module):
    """outputs = x @ w.T; fed the identity, outputs = w.T, so the loss below has gradient GRAD."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2, 3))

    def forward(self, x):
        return x @ self.w.T


def _loss(outputs, targets):
    return (outputs.float() * targets).sum() / outputs.shape[0]


def _update(precision: str, fused: bool, callbacks, device: str = "cpu", name: str = "sgd") -> torch.Tensor:
    model = Linear()
    data = [(torch.eye(3, device=device), 3 * GRAD.T.to(device))]  # loss = sum(w.T * GRAD.T): gradient GRAD
    trainer = Trainer(model, data, loss=_loss, optimizer={"name": name, "lr": 1.0, "fused": fused},
                      callbacks=callbacks, steps=1, precision=precision, device=device, progress=False, seed=3)
    trainer.fit()
    if name == "sgd":
        assert (trainer.state.optimizer.defaults.get("fused") is True) == fused
    return -model.w.detach().cpu().clone()  # the update, as w started at zero


CASES = {
    "clipping": lambda: [C.GradientClipping(max_norm=1e-3)],
    "noise": lambda: [C.GradientNoise(eta=1e-6)],
    "centralisation": lambda: [C.GradientCentralization()],
    "clipping+centralisation": lambda: [C.GradientCentralization(), C.GradientClipping(max_norm=2e-3)],
}


def test_the_plain_update_is_the_gradient():
    torch.testing.assert_close(_update("fp32", False, []), GRAD)


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_fp16_update_equals_the_fp32_update(case, fused):
    expected = _update("fp32", False, CASES[case]())
    got = _update("fp16", fused, CASES[case]())
    # fp16 autocast rounds the forward pass (about 3 significant digits), nothing more
    torch.testing.assert_close(got, expected, rtol=2e-3, atol=1e-6)
    if case == "clipping":
        assert got.norm().item() == pytest.approx(1e-3, rel=2e-3)  # [9e-9 ...] before the fix


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["sgd", "adamw", "radam"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_fp16_update_equals_the_fp32_update_on_cuda(case, name):
    """On CUDA create_optimizer fuses by default (FusedRAdam for radam with fused=True)."""
    expected = _update("fp32", False, CASES[case](), device="cuda", name=name)
    got = _update("fp16", True, CASES[case](), device="cuda", name=name)
    torch.testing.assert_close(got, expected, rtol=2e-3, atol=1e-6)


def test_unscaling_is_asked_for_only_when_a_hook_is_attached():
    from trickbag.optim import Lookahead, attach_grad_clipping
    from trickbag.train.trainer import _has_step_pre_hooks

    w = nn.Parameter(torch.zeros(2))
    inner = torch.optim.SGD([w], lr=0.1)
    wrapped = Lookahead(inner)
    assert not _has_step_pre_hooks(wrapped)
    handle = attach_grad_clipping(inner, max_norm=1.0)
    assert _has_step_pre_hooks(wrapped) and _has_step_pre_hooks(inner)
    handle.remove()
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(lambda opt, args, kwargs: None)
    assert _has_step_pre_hooks(inner)
    handle.remove()
    assert not _has_step_pre_hooks(inner)
