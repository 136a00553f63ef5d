"""Adversarial training in embedding space for text models: FGM and PGD on a named parameter."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from trickbag._validate import check_choice, check_nonnegative, check_positive, check_positive_int

__all__ = ["embedding_parameters", "FGM", "PGDEmbedding", "adversarial_loss"]


def embedding_parameters(model: nn.Module, target: str = "embedding") -> list[tuple[str, nn.Parameter]]:
    """The trainable parameters whose name contains ``target``.

    No match raises ``ValueError`` listing the embedding-like parameters the model has (those of
    ``nn.Embedding`` modules, or named like "emb"), so a typo is easy to fix.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 2))
        >>> [name for name, _ in embedding_parameters(model, "0.weight")]
        ['0.weight']
    """
    if not target:
        raise ValueError("target must be a non-empty substring of a parameter name")
    found = [(n, p) for n, p in model.named_parameters() if target in n and p.requires_grad]
    if found:
        return found
    candidates = {f"{name}.weight" if name else "weight" for name, m in model.named_modules() if isinstance(m, nn.Embedding)}
    candidates |= {n for n, _ in model.named_parameters() if "emb" in n.lower()}
    raise ValueError(
        f"no trainable parameter name contains {target!r}; embedding-like parameters: "
        f"{sorted(candidates) or 'none (the model has no nn.Embedding)'}"
    )


def _unit(g: Tensor) -> Tensor:
    """g / ||g||, and zero where the norm is zero or not finite; no host synchronisation."""
    norm = g.norm()
    ok = torch.isfinite(norm) & (norm > 0)
    return torch.where(ok, g / torch.where(ok, norm, torch.ones_like(norm)), torch.zeros_like(g))


def _project(delta: Tensor, epsilon: float) -> Tensor:
    """``delta`` scaled into the L2 ball of radius ``epsilon`` (unchanged when inside)."""
    return delta * torch.clamp(epsilon / delta.norm().clamp_min(1e-12), max=1.0)


class FGM:
    r"""Fast gradient method on embeddings (Miyato et al. 2017): add
    :math:`r = \varepsilon\, g / \lVert g \rVert_2` to the embedding weights, where ``g`` is
    their gradient from the clean loss.

    Usage inside a training step::

        loss = loss_fn(model(x), y); loss.backward()
        fgm.attack()                                 # perturb the embedding
        loss_fn(model(x), y).backward()              # accumulate the adversarial gradient
        fgm.restore()                                # put the embedding back, bit for bit
        optimizer.step(); optimizer.zero_grad()

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(12, 2))
        >>> fgm = FGM(model, target="0.weight", epsilon=1.0)
        >>> before = model[0].weight.detach().clone()
        >>> x, y = torch.tensor([[1, 2, 3]]), torch.tensor([1])
        >>> torch.nn.functional.cross_entropy(model(x), y).backward()
        >>> fgm.attack(); round((model[0].weight - before).norm().item(), 4)
        1.0
        >>> fgm.restore(); torch.equal(model[0].weight, before)
        True

    Reference: Miyato, Dai, Goodfellow, "Adversarial Training Methods for Semi-Supervised Text
    Classification", ICLR 2017.
    """

    def __init__(self, model: nn.Module, target: str = "embedding", epsilon: float = 1.0):
        check_nonnegative("epsilon", epsilon)
        self.params = embedding_parameters(model, target)
        self.epsilon = epsilon
        self._backup: dict[str, Tensor] = {}

    @torch.no_grad()
    def attack(self) -> None:
        if self._backup:
            raise RuntimeError("FGM.attack() called twice without restore()")
        for name, p in self.params:
            if p.grad is None:
                continue
            self._backup[name] = p.detach().clone()
            p.add_(self.epsilon * _unit(p.grad))

    @torch.no_grad()
    def restore(self) -> None:
        for name, p in self.params:
            if name in self._backup:
                p.copy_(self._backup[name])
        self._backup.clear()


class PGDEmbedding:
    """PGD on embeddings: ``steps`` ascent steps of size ``alpha`` along the normalised gradient,
    each projected back into the L2 ball of radius ``epsilon`` around the clean weights.

    Usage (K = ``steps``)::

        loss.backward(); pgd.backup_grad()
        for t in range(K):
            pgd.attack(is_first_attack=(t == 0))
            if t != K - 1: model.zero_grad()
            else: pgd.restore_grad()
            loss_fn(model(x), y).backward()
        pgd.restore(); optimizer.step()

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(8, 2))
        >>> pgd = PGDEmbedding(model, target="0.weight", epsilon=0.5, alpha=0.3, steps=3)
        >>> before = model[0].weight.detach().clone()
        >>> x, y = torch.tensor([[1, 2]]), torch.tensor([0])
        >>> for t in range(3):
        ...     model.zero_grad(); torch.nn.functional.cross_entropy(model(x), y).backward()
        ...     pgd.attack(is_first_attack=(t == 0))
        >>> bool((model[0].weight - before).norm() <= 0.5 + 1e-6)
        True
        >>> pgd.restore(); torch.equal(model[0].weight, before)
        True

    Reference: Madry et al., ICLR 2018; applied to embeddings as in Zhu et al., "FreeLB",
    ICLR 2020.
    """

    def __init__(self, model: nn.Module, target: str = "embedding", epsilon: float = 1.0, alpha: float = 0.3, steps: int = 3):
        check_nonnegative("epsilon", epsilon)
        check_positive("alpha", alpha)
        check_positive_int("steps", steps)
        self.model = model
        self.params = embedding_parameters(model, target)
        self.epsilon, self.alpha, self.steps = epsilon, alpha, steps
        self._backup: dict[str, Tensor] = {}
        self._grads: dict[str, Tensor] = {}

    @torch.no_grad()
    def attack(self, is_first_attack: bool = False) -> None:
        for name, p in self.params:
            if p.grad is None:
                continue
            if is_first_attack or name not in self._backup:
                self._backup[name] = p.detach().clone()
            p.add_(self.alpha * _unit(p.grad))
            p.copy_(self._backup[name] + _project(p - self._backup[name], self.epsilon))

    @torch.no_grad()
    def restore(self) -> None:
        for name, p in self.params:
            if name in self._backup:
                p.copy_(self._backup[name])
        self._backup.clear()

    def backup_grad(self) -> None:
        self._grads = {n: p.grad.clone() for n, p in self.model.named_parameters() if p.grad is not None}

    def restore_grad(self) -> None:
        for n, p in self.model.named_parameters():
            if n in self._grads:
                p.grad = self._grads[n]
        self._grads = {}


def adversarial_loss(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    batch: tuple[Tensor, Tensor],
    *,
    target: str = "embedding",
    epsilon: float = 1.0,
    method: str = "fgm",
    alpha: float = 0.3,
    steps: int = 3,
) -> Tensor:
    """The extra loss of embedding-space adversarial training, to add to the clean loss.

    The perturbation comes from the gradient of the clean loss with respect to the matched
    parameters (FGM: one normalised step of size ``epsilon``; PGD: ``steps`` steps of size
    ``alpha``, each projected into the L2 ball of radius ``epsilon``, as :class:`PGDEmbedding`). The returned loss is computed with the
    perturbed weights through ``torch.func.functional_call`` (nothing is written into the
    model), and back-propagates into the clean weights. Costs one clean forward and backward
    plus one (FGM) or ``steps`` (PGD) adversarial passes.

    Example:
        >>> import torch
        >>> torch.manual_seed(0) is not None
        True
        >>> model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(8, 2))
        >>> x, y = torch.tensor([[1, 2], [3, 4]]), torch.tensor([0, 1])
        >>> clean = torch.nn.functional.cross_entropy(model(x), y)
        >>> adv = adversarial_loss(model, torch.nn.functional.cross_entropy, (x, y), target="0.weight")
        >>> bool(adv > clean)  # the perturbation increases the loss
        True
    """
    check_choice("method", method, ("fgm", "pgd"))
    check_nonnegative("epsilon", epsilon)
    inputs, targets = batch
    named = dict(embedding_parameters(model, target))
    names = list(named)
    with torch.enable_grad():
        clean = loss_fn(model(inputs), targets)
        grads = torch.autograd.grad(clean, [named[n] for n in names], allow_unused=True)
        if method == "fgm":
            r = {n: epsilon * _unit(g) if g is not None else torch.zeros_like(named[n]) for n, g in zip(names, grads)}
        else:
            check_positive("alpha", alpha)
            check_positive_int("steps", steps)
            r = {n: _project(alpha * _unit(g), epsilon) if g is not None else torch.zeros_like(named[n])
                 for n, g in zip(names, grads)}
            for _ in range(steps - 1):
                deltas = {n: r[n].detach().requires_grad_(True) for n in names}
                out = functional_call(model, {n: named[n].detach() + deltas[n] for n in names}, (inputs,))
                step_grads = torch.autograd.grad(loss_fn(out, targets), [deltas[n] for n in names], allow_unused=True)
                for n, g in zip(names, step_grads):
                    if g is None:
                        continue
                    r[n] = _project(r[n].detach() + alpha * _unit(g), epsilon)
        perturbed = {n: named[n] + r[n].detach() for n in names}
        return loss_fn(functional_call(model, perturbed, (inputs,)), targets)
