"""train_on_embeddings: the gradients it leaves are those of the clean loss plus the adversarial
loss of each method (FGM, PGD, FreeLB), and FreeLB's loss is the mean along the ascent path."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from embedding_path import ascent_path

from trickbag.adversarial import EmbeddingAdversary, adversarial_loss, train_on_embeddings


class TextModel(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(30, 8)
        self.conv = nn.Conv1d(8, 6, 2)
        self.fc = nn.Linear(6, 2)

    def forward(self, tokens):
        h = torch.tanh(self.conv(self.embedding(tokens).transpose(1, 2)))
        return self.fc(h.amax(2))


def text_batch(gen, n=6):
    return torch.randint(0, 30, (n, 5), generator=gen), torch.randint(0, 2, (n,), generator=gen)


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("method", ["fgm", "pgd", "freelb"])
def test_backward_leaves_the_gradient_of_clean_plus_adversarial_loss(gen, method):
    x, y = text_batch(gen)
    model = TextModel()
    reference = copy.deepcopy(model)
    adversary = train_on_embeddings(model, "embedding", epsilon=0.4, method=method, alpha=0.25, steps=3)
    clean_weights = model.embedding.weight.detach().clone()
    loss = adversary.backward(F.cross_entropy, x, y)
    assert torch.equal(model.embedding.weight, clean_weights)  # restored bit for bit
    total = F.cross_entropy(reference(x), y) + adversarial_loss(
        reference, F.cross_entropy, (x, y), target="embedding", epsilon=0.4, method=method, alpha=0.25, steps=3)
    total.backward()
    expected = grads(reference)
    for name, g in grads(model).items():
        torch.testing.assert_close(g, expected[name], rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(loss, F.cross_entropy(model(x), y))
    # and it is not the clean gradient alone
    plain = copy.deepcopy(reference)
    plain.zero_grad()
    F.cross_entropy(plain(x), y).backward()
    assert not torch.allclose(model.fc.weight.grad, plain.fc.weight.grad)


@pytest.mark.parametrize("epsilon, alpha, steps", [(0.5, 0.2, 4), (0.3, 0.5, 2), (1.0, 0.4, 1)])
def test_freelb_loss_is_the_mean_along_the_ascent_path(gen, epsilon, alpha, steps):
    model = TextModel()
    x, y = text_batch(gen)
    got = adversarial_loss(model, F.cross_entropy, (x, y), method="freelb", epsilon=epsilon, alpha=alpha, steps=steps)
    path, _ = ascent_path(model, x, y, epsilon, alpha, steps)
    torch.testing.assert_close(got, torch.stack(path).mean())
    pgd_loss = adversarial_loss(model, F.cross_entropy, (x, y), method="pgd", epsilon=epsilon, alpha=alpha, steps=steps)
    torch.testing.assert_close(pgd_loss, path[-1])  # PGD keeps the last point only


def test_the_embedding_is_found_by_module_name_and_mistakes_are_explained():
    model = TextModel()
    adversary = train_on_embeddings(model, "embedding", epsilon=0.5)
    assert [n for n, _ in adversary.params] == ["embedding.weight"]
    assert adversary.alpha == pytest.approx(2.5 * 0.5 / 3)
    with pytest.raises(ValueError, match=r"no trainable parameter name contains 'word_embeddings'.*'embedding.weight'"):
        train_on_embeddings(model, "word_embeddings")
    with pytest.raises(ValueError, match="unknown method 'vat'"):
        EmbeddingAdversary(model, method="vat")
    with pytest.raises(ValueError, match="epsilon must be >= 0"):
        train_on_embeddings(model, epsilon=-1.0)


def test_adversarial_training_in_a_hand_written_loop_learns(gen):
    """One changed line in a plain loop: the model still learns a separable toy task."""
    torch.manual_seed(0)
    x = torch.randint(1, 30, (256, 5), generator=gen)
    y = (x < 15).sum(1).gt(2).long()  # the label depends on which half of the vocabulary dominates
    model = TextModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    adversary = train_on_embeddings(model, "embedding", epsilon=0.3, method="freelb")
    first = None
    for _ in range(60):
        loss = adversary.backward(F.cross_entropy, x, y)
        first = first if first is not None else loss.item()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert loss.item() < 0.5 * first and acc > 0.9
