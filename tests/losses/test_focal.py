"""Focal losses against cross-entropy, a float64 closed form and torchvision's output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trickbag.losses import FocalLoss, SigmoidFocalLoss, focal_loss, sigmoid_focal_loss

GOLDEN = Path(__file__).parents[1] / "fixtures" / "torchvision_sigmoid_focal.pt"


def reference_focal(logits, target, gamma, alpha=None):
    """Per-example focal loss in float64 straight from the definition."""
    p = torch.softmax(logits.double(), dim=1)
    pt = p.gather(1, target.unsqueeze(1)).squeeze(1)
    w = torch.ones_like(pt) if alpha is None else alpha.double()[target]
    return -w * (1 - pt) ** gamma * torch.log(pt)


def test_gamma_zero_is_cross_entropy(gen):
    logits = torch.randn(64, 7, generator=gen)
    target = torch.randint(0, 7, (64,), generator=gen)
    for red in ("mean", "sum", "none"):
        torch.testing.assert_close(
            focal_loss(logits, target, gamma=0.0, reduction=red), F.cross_entropy(logits, target, reduction=red)
        )


def test_per_class_alpha_with_gamma_zero_is_weighted_cross_entropy(gen):
    logits = torch.randn(40, 4, generator=gen)
    target = torch.randint(0, 4, (40,), generator=gen)
    alpha = torch.tensor([0.1, 0.5, 2.0, 1.0])
    torch.testing.assert_close(
        focal_loss(logits, target, gamma=0.0, alpha=alpha), F.cross_entropy(logits, target, weight=alpha)
    )


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_matches_float64_definition(gen, gamma):
    logits = torch.randn(50, 6, generator=gen) * 3
    target = torch.randint(0, 6, (50,), generator=gen)
    alpha = torch.rand(6, generator=gen)
    ours = focal_loss(logits, target, gamma=gamma, alpha=alpha, reduction="none")
    torch.testing.assert_close(ours.double(), reference_focal(logits, target, gamma, alpha), rtol=1e-5, atol=1e-6)
    ours_float_alpha = focal_loss(logits, target, gamma=gamma, alpha=0.25, reduction="sum")
    torch.testing.assert_close(
        ours_float_alpha.double(), 0.25 * reference_focal(logits, target, gamma).sum(), rtol=1e-5, atol=1e-6
    )


def test_ignore_index_and_spatial_targets_match_cross_entropy(gen):
    logits = torch.randn(2, 3, 4, 5, generator=gen)
    target = torch.randint(0, 3, (2, 4, 5), generator=gen)
    target[0, 0, :3] = -100
    torch.testing.assert_close(focal_loss(logits, target, gamma=0.0), F.cross_entropy(logits, target))


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_float64_logits_are_computed_and_returned_in_float64(gen, gamma):
    logits = torch.randn(40, 5, generator=gen, dtype=torch.float64) * 3
    target = torch.randint(0, 5, (40,), generator=gen)
    for reduction in ("none", "mean"):
        ours = focal_loss(logits, target, gamma=gamma, reduction=reduction)
        assert ours.dtype == torch.float64
        ref = reference_focal(logits, target, gamma)
        torch.testing.assert_close(ours, ref if reduction == "none" else ref.mean(), rtol=1e-12, atol=1e-14)


def test_half_logits_come_back_half_and_float32_under_autocast(gen):
    logits = torch.randn(8, 5, generator=gen).half()
    target = torch.randint(0, 5, (8,), generator=gen)
    assert focal_loss(logits, target).dtype == torch.float16  # as F.cross_entropy
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert focal_loss(logits.bfloat16(), target).dtype == torch.float32


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_large_logits_give_finite_values_and_gradients(gamma):
    logits = torch.tensor([[1e4, -1e4, 0.0], [-3e4, 3e4, 1.0]], requires_grad=True)
    target = torch.tensor([0, 0])  # one certain hit, one certain miss
    loss = focal_loss(logits, target, gamma=gamma)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_module_equals_function(gen):
    logits, target = torch.randn(8, 3, generator=gen), torch.randint(0, 3, (8,), generator=gen)
    alpha = torch.tensor([1.0, 2.0, 3.0])
    module = FocalLoss(gamma=1.5, alpha=alpha)
    assert "alpha" in dict(module.named_buffers())
    torch.testing.assert_close(module(logits, target), focal_loss(logits, target, gamma=1.5, alpha=alpha))


@pytest.mark.parametrize(
    "kwargs, target, match",
    [
        ({"gamma": -1.0}, torch.tensor([0, 1]), "gamma must be >= 0, got -1.0"),
        ({"reduction": "avg"}, torch.tensor([0, 1]), "unknown reduction 'avg'"),
        ({}, torch.tensor([0, 3]), "target class 3 is out of range for 3 classes"),
        ({}, torch.tensor([0, 1, 2]), r"target must have shape \(2,\)"),
        ({}, torch.tensor([0.0, 1.0]), "integer tensor"),
        ({"alpha": torch.ones(2)}, torch.tensor([0, 1]), r"alpha as a tensor must have shape \(3,\)"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, target, match):
    with pytest.raises(ValueError, match=match):
        focal_loss(torch.randn(2, 3), target, **kwargs)


def reference_sigmoid_focal(x, y, gamma, alpha):
    x, y = x.double(), y.double()
    p = torch.sigmoid(x)
    ce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


@pytest.mark.parametrize("gamma, alpha", [(2.0, 0.25), (0.0, -1.0), (1.0, 0.75)])
def test_sigmoid_focal_matches_float64_definition(gen, gamma, alpha):
    x = torch.randn(10, 4, generator=gen) * 2
    y = (torch.rand(10, 4, generator=gen) > 0.7).float()
    ours = sigmoid_focal_loss(x, y, gamma=gamma, alpha=alpha)
    torch.testing.assert_close(ours.double(), reference_sigmoid_focal(x, y, gamma, alpha), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("gamma", [0.25, 0.5, 0.9, 2.0])
def test_sigmoid_focal_has_finite_gradients_at_saturated_logits(gamma):
    x = torch.tensor([20.0, -20.0, 40.0, -40.0, 0.5], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])  # four certain hits and one uncertain one
    loss = sigmoid_focal_loss(x, y, gamma=gamma, reduction="sum")
    loss.backward()
    assert torch.isfinite(x.grad).all(), x.grad
    assert x.grad[4] != 0  # the uncertain example still learns
    z = x.detach().double() * (2 * y.double() - 1)  # the margin; stable float64 reference below
    alpha_t = 0.25 * y.double() + 0.75 * (1 - y.double())
    expected = (alpha_t * F.softplus(-z) * torch.sigmoid(-z) ** gamma).sum()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=1e-12)


def test_sigmoid_focal_equals_torchvision_recorded_output():
    """Inputs and outputs recorded from torchvision.ops.sigmoid_focal_loss (recorded by tests/fixtures/make_torchvision_reference.py)."""
    golden = torch.load(GOLDEN, weights_only=True)
    for case in golden["cases"]:
        ours = sigmoid_focal_loss(
            golden["inputs"], golden["targets"], gamma=case["gamma"], alpha=case["alpha"], reduction=case["reduction"]
        )
        torch.testing.assert_close(ours, case["output"], rtol=1e-6, atol=1e-7)


def test_sigmoid_focal_equals_torchvision_when_installed(gen):
    tv = pytest.importorskip("torchvision.ops", reason="torchvision is not installed (extra: vision)")
    x, y = torch.randn(6, 5, generator=gen), (torch.rand(6, 5, generator=gen) > 0.5).float()
    for red in ("none", "mean", "sum"):
        torch.testing.assert_close(sigmoid_focal_loss(x, y, reduction=red), tv.sigmoid_focal_loss(x, y, reduction=red))


def test_sigmoid_focal_module_and_errors(gen):
    x, y = torch.randn(3, 2, generator=gen), torch.ones(3, 2)
    torch.testing.assert_close(SigmoidFocalLoss()(x, y), sigmoid_focal_loss(x, y, reduction="mean"))
    with pytest.raises(ValueError, match="same shape"):
        sigmoid_focal_loss(x, torch.ones(3))
    with pytest.raises(ValueError, match="alpha must be in"):
        sigmoid_focal_loss(x, y, alpha=1.5)


@pytest.mark.parametrize("name", ["focal_loss", "sigmoid_focal_loss", "label_smoothing", "flood"])
def test_losses_compile_with_fullgraph(gen, name):
    """No data-dependent Python branch in a loss: torch.compile(fullgraph=True) traces it whole
    (the eager backend checks the tracing without a slow code generation)."""
    from trickbag.losses import LabelSmoothingCrossEntropy, flood

    x, y = torch.randn(6, 4, generator=gen), torch.randint(0, 4, (6,), generator=gen)
    fn, args = {
        "focal_loss": (lambda z, t: focal_loss(z, t, gamma=2.0), (x, y)),
        "sigmoid_focal_loss": (lambda z, t: sigmoid_focal_loss(z, t, reduction="mean"), (x, torch.rand(6, 4, generator=gen))),
        "label_smoothing": (LabelSmoothingCrossEntropy(0.1), (x, y)),
        "flood": (lambda z, t: flood(F.cross_entropy(z, t), 0.5), (x, y)),
    }[name]
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(*args), fn(*args))
