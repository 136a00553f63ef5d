"""Attacks: norms and ranges, loss increases, and the model is left exactly as found."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from embedding_path import ascent_path

from trickbag.adversarial import FGM, PGDEmbedding, adversarial_loss, embedding_parameters, fgsm, ifgsm, pgd


def classifier():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                         nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def batch(gen, n=8):
    return torch.rand(n, 1, 6, 6, generator=gen) * 0.8 + 0.1, torch.randint(0, 3, (n,), generator=gen)


def snapshot(model):
    """Everything an attack must not change."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "modes": [m.training for m in model.modules()],
    }


def assert_untouched(model, snap):
    now = snapshot(model)
    for k, v in snap["state"].items():
        assert torch.equal(now["state"][k], v), k
    for k, v in snap["grads"].items():
        assert (v is None and now["grads"][k] is None) or torch.equal(now["grads"][k], v), k
    assert now["requires_grad"] == snap["requires_grad"]
    assert now["modes"] == snap["modes"]


@pytest.fixture
def prepared(gen):
    """A model in a mixed state: train mode but BN frozen in eval, some grads set, a frozen layer."""
    model = classifier().train()
    model[1].eval()
    model[0].bias.requires_grad_(False)
    x, y = batch(gen)
    F.cross_entropy(model(x), y).backward()
    return model, x, y


def test_fgsm_has_linf_norm_exactly_eps_and_increases_the_loss(prepared):
    model, x, y = prepared
    snap = snapshot(model)
    adv = fgsm(model, x, y, eps=0.05, clamp=None)
    delta = (adv - x).abs()
    x_req = x.clone().requires_grad_(True)
    model_eval = copy.deepcopy(model).eval()
    (g,) = torch.autograd.grad(F.cross_entropy(model_eval(x_req), y), x_req)
    nonzero = g != 0
    torch.testing.assert_close(delta[nonzero], torch.full_like(delta[nonzero], 0.05))
    assert torch.all(delta[~nonzero] == 0)
    with torch.no_grad():
        assert F.cross_entropy(model_eval(adv), y) > F.cross_entropy(model_eval(x), y)
    assert_untouched(model, snap)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_stays_in_the_ball_and_the_valid_range(prepared, norm):
    model, x, y = prepared
    snap = snapshot(model)
    eps = 0.1 if norm == "linf" else 0.5
    adv = pgd(model, x, y, eps=eps, alpha=eps / 3, steps=6, norm=norm, generator=torch.Generator().manual_seed(0))
    delta = adv - x
    if norm == "linf":
        assert delta.abs().max() <= eps + 1e-6
    else:
        assert (delta.flatten(1).norm(dim=1) <= eps + 1e-5).all()
    assert adv.min() >= 0 and adv.max() <= 1
    model_eval = copy.deepcopy(model).eval()
    with torch.no_grad():
        assert F.cross_entropy(model_eval(adv), y) > F.cross_entropy(model_eval(x), y)
    assert_untouched(model, snap)


def test_ifgsm_is_deterministic_and_bounded(prepared):
    model, x, y = prepared
    a = ifgsm(model, x, y, eps=0.05, alpha=0.02, steps=4)
    b = ifgsm(model, x, y, eps=0.05, alpha=0.02, steps=4)
    assert torch.equal(a, b) and (a - x).abs().max() <= 0.05 + 1e-7


def test_attacks_work_under_no_grad(prepared):
    model, x, y = prepared
    with torch.no_grad():
        adv = fgsm(model, x, y, eps=0.01)
    assert not torch.equal(adv, x)


def test_input_attack_errors(prepared):
    model, x, y = prepared
    with pytest.raises(ValueError, match="eps must be >= 0"):
        fgsm(model, x, y, eps=-0.1)
    with pytest.raises(ValueError, match="batch size: 8 vs 3"):
        fgsm(model, x, y[:3], eps=0.1)
    with pytest.raises(ValueError, match="unknown norm 'l1'"):
        pgd(model, x, y, eps=0.1, alpha=0.1, steps=1, norm="l1")
    with pytest.raises(ValueError, match="clamp must be None or"):
        fgsm(model, x, y, eps=0.1, clamp=(1.0, 0.0))


class TextModel(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(30, 8)
        self.fc = nn.Linear(8, 2)

    def forward(self, tokens):
        return self.fc(self.embedding(tokens).mean(1))


def text_batch(gen):
    return torch.randint(0, 30, (6, 5), generator=gen), torch.randint(0, 2, (6,), generator=gen)


def test_fgm_perturbs_by_epsilon_along_the_gradient_and_restores_bit_for_bit(gen):
    model = TextModel()
    x, y = text_batch(gen)
    F.cross_entropy(model(x), y).backward()
    clean = model.embedding.weight.detach().clone()
    g = model.embedding.weight.grad.clone()
    fgm = FGM(model, target="embedding", epsilon=0.7)
    fgm.attack()
    torch.testing.assert_close(model.embedding.weight.detach() - clean, 0.7 * g / g.norm())
    F.cross_entropy(model(x), y).backward()  # adversarial gradient accumulates
    fgm.restore()
    assert torch.equal(model.embedding.weight, clean)
    with pytest.raises(RuntimeError, match="twice"):
        fgm.attack()
        fgm.attack()


def test_pgd_embedding_projects_and_restores(gen):
    model = TextModel()
    x, y = text_batch(gen)
    pgd_e = PGDEmbedding(model, epsilon=0.3, alpha=0.2, steps=4)
    clean = model.embedding.weight.detach().clone()
    F.cross_entropy(model(x), y).backward()
    pgd_e.backup_grad()
    saved = model.fc.weight.grad.clone()
    for t in range(4):
        pgd_e.attack(is_first_attack=(t == 0))
        assert (model.embedding.weight - clean).norm() <= 0.3 + 1e-6
        if t != 3:
            model.zero_grad()
        else:
            pgd_e.restore_grad()
        F.cross_entropy(model(x), y).backward()
    pgd_e.restore()
    assert torch.equal(model.embedding.weight, clean)
    assert not torch.equal(model.fc.weight.grad, saved)  # the final adversarial gradient was added


def test_adversarial_loss_fgm_matches_manual_perturbation(gen):
    model = TextModel()
    x, y = text_batch(gen)
    weight = model.embedding.weight
    weight_before = weight.detach().clone()
    extra = adversarial_loss(model, F.cross_entropy, (x, y), target="embedding", epsilon=0.5)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), weight)
    manual = copy.deepcopy(model)
    with torch.no_grad():
        manual.embedding.weight += 0.5 * g / g.norm()
    torch.testing.assert_close(extra, F.cross_entropy(manual(x), y))
    extra.backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0  # flows into the clean weights
    assert torch.equal(model.embedding.weight, weight_before)  # nothing written into the model


@pytest.mark.parametrize("epsilon, alpha, steps", [(0.1, 0.3, 1), (0.5, 0.2, 4), (0.0, 0.3, 1)])
def test_adversarial_loss_pgd_projects_every_step(gen, epsilon, alpha, steps):
    model = TextModel()
    x, y = text_batch(gen)
    extra = adversarial_loss(model, F.cross_entropy, (x, y), method="pgd", epsilon=epsilon, alpha=alpha, steps=steps)
    losses, delta = ascent_path(model, x, y, epsilon, alpha, steps)
    expected = losses[-1]
    assert delta.norm().item() <= epsilon + 1e-6
    torch.testing.assert_close(extra, expected)
    if epsilon == 0:
        torch.testing.assert_close(extra, F.cross_entropy(model(x), y))  # no room: the clean loss


def test_target_mismatch_lists_embedding_parameters():
    with pytest.raises(ValueError, match=r"no trainable parameter name contains 'word_emb'.*\['embedding.weight'\]"):
        embedding_parameters(TextModel(), "word_emb")
    with pytest.raises(ValueError, match="has no nn.Embedding"):
        FGM(nn.Linear(2, 2), target="embedding")
