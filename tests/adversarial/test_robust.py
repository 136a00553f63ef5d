"""Robust accuracy against attacks computed by hand, fast FGSM against its definition, and the
detection of catastrophic overfitting."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trickbag.adversarial import (
    detect_catastrophic_overfitting,
    fast_fgsm,
    make_attack,
    robust_accuracy,
)
from trickbag.augment import Normalizer
from trickbag.data import ArrayDataset, DeviceLoader


def linear_binary(gen, d=6):
    model = nn.Linear(d, 2)
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, d, generator=gen))
        model.bias.copy_(torch.randn(2, generator=gen) * 0.3)
    return model


def worst_margins(weight, bias, x, y, eps, clamp):
    """The L-infinity worst case of a binary linear classifier, by hand: the margin
    m = (w_y - w_o) . x + (b_y - b_o) falls fastest by moving every coordinate against the sign
    of its coefficient, by eps or as far as the valid range lets it."""
    w = weight.double()
    delta = w[y] - w[1 - y]  # (n, d)
    margin = (delta * x.double()).sum(1) + (bias.double()[y] - bias.double()[1 - y])
    step = torch.full_like(x.double(), eps)
    if clamp is not None:
        room = torch.where(delta > 0, x.double() - clamp[0], clamp[1] - x.double())
        step = torch.minimum(step, room)
    return margin - (delta.abs() * step).sum(1)


@pytest.mark.parametrize("clamp", [None, (0.0, 1.0)])
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_robust_accuracy_of_a_linear_model_equals_the_hand_computed_worst_case(gen, attack, clamp):
    model = linear_binary(gen)
    x = torch.rand(400, 6, generator=gen)
    flip = torch.rand(400, generator=gen) < 0.1
    y = torch.where(flip, 1 - model(x).argmax(1), model(x).argmax(1))  # 90% right when clean
    eps = 0.15
    expected = (worst_margins(model.weight.detach(), model.bias.detach(), x, y, eps, clamp) > 0).double().mean().item()
    clean = (model(x).argmax(1) == y).double().mean().item()
    got = robust_accuracy(model, (x, y), attack=attack, eps=eps, clamp=clamp)
    assert got == pytest.approx(expected, abs=1e-9)
    assert 0.1 < got < clean - 0.05  # the case is not degenerate: the attack matters, and not everywhere


def test_robust_accuracy_over_a_loader_with_preprocessing_and_max_examples(gen):
    """The attack works on raw pixels; the model sees normalised ones: the composition is again
    linear, so the worst case is known by hand."""
    model = linear_binary(gen, d=4)
    mean, std = torch.tensor([0.3]), torch.tensor([0.2])
    pixels = torch.rand(300, 1, 2, 2, generator=gen)
    y = torch.randint(0, 2, (300,), generator=gen)
    flat = nn.Sequential(nn.Flatten(), model)
    loader = DeviceLoader(ArrayDataset(pixels, y), 64, shuffle=False)
    got = robust_accuracy(flat, loader, attack="pgd", eps=0.05, preprocess=Normalizer(mean, std), max_examples=250)
    weight = model.weight.detach() / std  # model((x - m) / s) = (W / s) x + (b - W m / s)
    bias = model.bias.detach() - (model.weight.detach() * mean / std).sum(1)
    m = worst_margins(weight, bias, pixels.flatten(1)[:250], y[:250], 0.05, (0.0, 1.0))
    assert got == pytest.approx((m > 0).double().mean().item(), abs=1e-9)


def test_clean_mistakes_count_as_not_robust_and_eps_zero_is_clean_accuracy(gen):
    model = linear_binary(gen)
    x, y = torch.rand(200, 6, generator=gen), torch.randint(0, 2, (200,), generator=gen)
    clean = (model(x).argmax(1) == y).double().mean().item()
    assert robust_accuracy(model, (x, y), attack="none") == pytest.approx(clean)
    assert robust_accuracy(model, (x, y), attack="pgd", eps=0.0) == pytest.approx(clean)
    assert robust_accuracy(model, (x, 1 - y), attack="pgd", eps=0.05) <= 1 - clean + 1e-9


def test_robust_accuracy_leaves_the_global_random_state_and_the_model_alone(gen):
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)).train()
    x, y = torch.rand(64, 6, generator=gen), torch.randint(0, 2, (64,), generator=gen)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    a = robust_accuracy(model, (x, y), eps=0.1, steps=5)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(3), after)  # a private generator: nothing drawn from the global one
    assert robust_accuracy(model, (x, y), eps=0.1, steps=5) == a  # deterministic
    assert model.training and all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_fast_fgsm_matches_its_definition_and_is_weaker_than_pgd(gen):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    x, y = torch.rand(32, 6, generator=gen), torch.randint(0, 3, (32,), generator=gen)
    eps = 0.1
    adv = fast_fgsm(model, x, y, eps=eps, generator=torch.Generator().manual_seed(7))
    # by the definition: a uniform start, one signed step of 1.25 eps, projection, clipping
    g = torch.Generator().manual_seed(7)
    start = (x + (torch.rand(x.shape, generator=g) * 2 - 1) * eps).clamp(0, 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(start), y), start)
    expected = (x + (start.detach() - x + 1.25 * eps * grad.sign()).clamp(-eps, eps)).clamp(0, 1)
    torch.testing.assert_close(adv, expected)
    assert (adv - x).abs().max() <= eps + 1e-7
    fast = robust_accuracy(model, (x, y), attack="fast_fgsm", eps=0.3)
    strong = robust_accuracy(model, (x, y), attack="pgd", eps=0.3, steps=20)
    assert strong <= fast


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="unknown attack 'pgd20'|attack must be one of"):
        make_attack("pgd20", eps=0.1)
    with pytest.raises(ValueError, match="eps must be >= 0, got -0.1"):
        make_attack("pgd", eps=-0.1)
    with pytest.raises(ValueError, match="no examples"):
        robust_accuracy(nn.Linear(2, 2), [], eps=0.1)
    images = torch.randint(0, 256, (2, 4), dtype=torch.uint8)  # integer images: the scale of eps is ambiguous
    with pytest.raises(ValueError, match=r"floating-point inputs .* got torch.uint8 .* x.float\(\) / 255"):
        robust_accuracy(nn.Linear(4, 2), (images, torch.tensor([0, 1])), eps=0.1)


def test_float64_models_and_a_batch_of_one(gen):
    model = linear_binary(gen).double()
    x, y = torch.rand(1, 6, generator=gen, dtype=torch.float64), torch.tensor([1])
    expected = float((worst_margins(model.weight, model.bias, x, y, 0.05, (0.0, 1.0)) > 0).double().mean())
    assert robust_accuracy(model, (x, y), attack="pgd", eps=0.05, steps=40) == expected


def test_catastrophic_overfitting_is_a_collapse_of_pgd_while_fgsm_rises():
    # steady robust training: nothing
    assert detect_catastrophic_overfitting([0.30, 0.40, 0.45, 0.44], [0.40, 0.50, 0.55, 0.56]) is None
    # both accuracies fall together (a bad learning rate, not gradient masking): nothing
    assert detect_catastrophic_overfitting([0.45, 0.50, 0.10], [0.55, 0.60, 0.20]) is None
    # PGD falls by less than drop and by less than half: nothing
    assert detect_catastrophic_overfitting([0.45, 0.50, 0.35], [0.55, 0.60, 0.90]) is None
    # a relative collapse where robust accuracy was low: plain FGSM on Fashion-MNIST, eps 0.1
    # (our run's probe after each epoch), caught at the fourth check, the best at the second
    real = detect_catastrophic_overfitting([0.207, 0.260, 0.150, 0.106], [0.486, 0.674, 0.639, 0.729])
    assert (real.best_index, real.index) == (1, 3)
    assert detect_catastrophic_overfitting([0.207, 0.260, 0.150], [0.486, 0.674, 0.639]) is None  # not yet
    # near zero all along (standard training): a halving within noise is not a collapse
    assert detect_catastrophic_overfitting([0.031, 0.004, 0.0], [0.117, 0.088, 0.125]) is None
    found = detect_catastrophic_overfitting([0.45, 0.50, 0.48, 0.05], [0.55, 0.60, 0.62, 0.93])
    assert (found.best_index, found.index, found.pgd_best, found.pgd_now) == (1, 3, 0.50, 0.05)
    message = found.message()
    assert "0.500" in message and "0.050" in message and "random start" in message
    with pytest.raises(ValueError, match="one value per check"):
        detect_catastrophic_overfitting([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="drop must be in"):
        detect_catastrophic_overfitting([0.1], [0.1], drop=0.0)
    with pytest.raises(ValueError, match="relative_drop must be in"):
        detect_catastrophic_overfitting([0.1], [0.1], relative_drop=1.5)
