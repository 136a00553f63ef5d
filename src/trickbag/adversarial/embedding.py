"""Adversarial training in embedding space for text models: FGM and PGD on a named parameter."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from trickbag._validate import check_choice, check_nonnegative, check_positive, check_positive_int

__all__ = ["embedding_parameters", "FGM", "PGDEmbedding", "adversarial_loss", "EmbeddingAdversary",
           "train_on_embeddings", "EMBEDDING_METHODS"]

#: The embedding-space methods: one step (Miyato et al.), K projected steps keeping the last
#: (Madry et al. on embeddings), K steps whose gradients are all accumulated (Zhu et al.'s FreeLB).
EMBEDDING_METHODS = ("fgm", "pgd", "freelb")


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
    r"""The extra loss of embedding-space adversarial training, to add to the clean loss.

    The perturbation comes from the gradient of the clean loss with respect to the matched
    parameters ``E``:

    - ``"fgm"``: one step, :math:`r = \varepsilon\, g / \lVert g \rVert_2`; returns :math:`L(E + r)`.
    - ``"pgd"``: ``steps`` steps :math:`\delta_{t+1} = \Pi_\varepsilon(\delta_t + \alpha\, g_t / \lVert g_t \rVert_2)`,
      :math:`\delta_0 = 0`, each projected into the L2 ball of radius ``epsilon`` (as
      :class:`PGDEmbedding`); returns the loss at the last point, :math:`L(E + \delta_K)`.
    - ``"freelb"``: the same path, returning the mean of the losses along it,
      :math:`\frac1K \sum_{t=1}^K L(E + \delta_t)`: FreeLB's accumulation of the gradients of
      every ascent step (Zhu et al. 2020; FreeLB itself starts from a random point and has no
      separate clean term).

    The returned loss is computed with the perturbed weights through
    ``torch.func.functional_call`` (nothing is written into the model), and back-propagates into
    the clean weights. Costs one clean forward and backward plus one (FGM) or ``steps`` (PGD,
    FreeLB) adversarial passes.

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
    check_choice("method", method, EMBEDDING_METHODS)
    check_nonnegative("epsilon", epsilon)
    inputs, targets = batch
    named = dict(embedding_parameters(model, target))
    names = list(named)
    with torch.enable_grad():
        clean = loss_fn(model(inputs), targets)
        grads = torch.autograd.grad(clean, [named[n] for n in names], allow_unused=True)
        if method == "fgm":
            r = {n: epsilon * _unit(g) if g is not None else torch.zeros_like(named[n]) for n, g in zip(names, grads)}
            perturbed = {n: named[n] + r[n].detach() for n in names}
            return loss_fn(functional_call(model, perturbed, (inputs,)), targets)
        check_positive("alpha", alpha)
        check_positive_int("steps", steps)
        r = {n: _project(alpha * _unit(g), epsilon) if g is not None else torch.zeros_like(named[n])
             for n, g in zip(names, grads)}
        losses = []
        for t in range(steps):
            last = t == steps - 1
            if method == "pgd" and last:
                break
            deltas = {n: r[n].detach().requires_grad_(True) for n in names}
            if method == "freelb":  # the loss at this point counts, and back-propagates into the weights
                out = functional_call(model, {n: named[n] + deltas[n] for n in names}, (inputs,))
            else:
                out = functional_call(model, {n: named[n].detach() + deltas[n] for n in names}, (inputs,))
            loss = loss_fn(out, targets)
            if method == "freelb":
                losses.append(loss)
                if last:
                    break
            step_grads = torch.autograd.grad(loss, [deltas[n] for n in names], allow_unused=True,
                                             retain_graph=method == "freelb")
            for n, g in zip(names, step_grads):
                if g is not None:
                    r[n] = _project(r[n].detach() + alpha * _unit(g), epsilon)
        if method == "freelb":
            return torch.stack(losses).mean()
        perturbed = {n: named[n] + r[n].detach() for n in names}
        return loss_fn(functional_call(model, perturbed, (inputs,)), targets)


class EmbeddingAdversary:
    r"""Adversarial training on a text model's embedding, for any training loop: FGM, PGD or
    FreeLB-style accumulation, on the parameters whose name contains ``target``.

    After the clean loss's backward pass, :meth:`add_adversarial_gradients` perturbs the
    embedding along its gradient, adds the gradient of the loss at the perturbed point(s) to
    every parameter's ``.grad``, and puts the embedding back bit for bit. The gradient left for
    the optimiser is that of

    - ``"fgm"``: :math:`L(E) + L(E + \varepsilon\, g / \lVert g \rVert)` (Miyato et al. 2017);
    - ``"pgd"``: :math:`L(E) + L(E + \delta_K)` after ``steps`` projected ascent steps;
    - ``"freelb"``: :math:`L(E) + \frac1K \sum_{t=1}^K L(E + \delta_t)`, every step of the
      ascent path counted (Zhu et al. 2020),

    the same losses as :func:`adversarial_loss` (where the tests check them), computed by
    perturbing the weights in place so that mixed precision, gradient accumulation and
    data-parallel hooks work unchanged. Costs one (FGM) or ``steps`` (PGD, FreeLB) extra
    forward and backward passes.

    Args:
        model: the model; ``target`` a substring of the embedding's parameter name (a module
            called ``embedding`` has the parameter ``embedding.weight``; BERT's is
            ``...word_embeddings.weight``). No match lists the embedding-like parameters.
        epsilon: the L2 radius of the perturbation (of the whole matched weight). Default 1.
        method: ``"fgm"`` (default), ``"pgd"`` or ``"freelb"``.
        alpha: the ascent step of PGD and FreeLB. Default ``2.5 * epsilon / steps``.
        steps: ascent steps of PGD and FreeLB. Default 3.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> model = torch.nn.Sequential(torch.nn.Embedding(20, 4), torch.nn.Flatten(), torch.nn.Linear(12, 2))
        >>> adversary = train_on_embeddings(model, "0.weight", epsilon=0.5)
        >>> x, y = torch.tensor([[1, 5, 7]]), torch.tensor([1])
        >>> before = model[0].weight.detach().clone()
        >>> loss = adversary.backward(F.cross_entropy, x, y)   # instead of F.cross_entropy(model(x), y).backward()
        >>> torch.equal(model[0].weight, before), model[2].weight.grad is not None
        (True, True)

    References: Miyato, Dai, Goodfellow, "Adversarial Training Methods for Semi-Supervised Text
    Classification", ICLR 2017; Madry et al., ICLR 2018; Zhu, Cheng, Gan, Sun, Goldstein, Liu,
    "FreeLB: Enhanced Adversarial Training for Natural Language Understanding", ICLR 2020.
    """

    def __init__(self, model: nn.Module, target: str = "embedding", *, epsilon: float = 1.0, method: str = "fgm",
                 alpha: float | None = None, steps: int = 3):
        check_choice("method", method, EMBEDDING_METHODS)
        check_nonnegative("epsilon", epsilon)
        check_positive_int("steps", steps)
        alpha = 2.5 * epsilon / steps if alpha is None else alpha
        check_positive("alpha", alpha)
        self.model, self.target = model, target
        self.params = embedding_parameters(model, target)
        self.epsilon, self.method, self.alpha, self.steps = epsilon, method, alpha, steps

    def __repr__(self) -> str:
        return (f"EmbeddingAdversary(target={self.target!r}, method={self.method!r}, epsilon={self.epsilon}, "
                f"alpha={self.alpha:.4g}, steps={self.steps})")

    def backward(self, loss_fn: Callable[[Tensor, Tensor], Tensor], inputs: Tensor, targets: Tensor) -> Tensor:
        """The clean loss's backward pass plus the adversarial gradients; returns the clean loss
        (detached). One call in place of ``loss_fn(model(inputs), targets).backward()``."""
        loss = loss_fn(self.model(inputs), targets)
        loss.backward()
        self.add_adversarial_gradients(lambda: loss_fn(self.model(inputs), targets))
        return loss.detach()

    @torch.no_grad()
    def _move(self, clean: dict[str, Tensor], delta: dict[str, Tensor]) -> None:
        for name, p in self.params:
            if name in delta:
                p.copy_(clean[name] + delta[name])

    def add_adversarial_gradients(self, closure: Callable[[], Tensor],
                                  backward: Callable[[Tensor], None] | None = None) -> None:
        """Call after the clean backward pass: ``closure()`` computes the loss of the same batch
        at the current weights, ``backward(loss)`` back-propagates it (default
        ``loss.backward()``; a trainer passes its own, with loss scaling)."""
        backward = backward or (lambda loss: loss.backward())
        active = [(n, p) for n, p in self.params if p.grad is not None]
        if not active:
            return
        with torch.no_grad():
            clean = {n: p.detach().clone() for n, p in active}
            direction = {n: p.grad.detach().clone() for n, p in active}
        try:
            if self.method == "fgm":
                self._move(clean, {n: self.epsilon * _unit(direction[n]) for n in clean})
                backward(closure())
                return
            delta = {n: torch.zeros_like(t) for n, t in clean.items()}
            if self.method == "pgd":
                grads = [p for p in self.model.parameters() if p.grad is not None]
                kept = [g.grad.detach().clone() for g in grads]
                for t in range(self.steps):
                    delta = {n: _project(delta[n] + self.alpha * _unit(direction[n]), self.epsilon) for n in clean}
                    self._move(clean, delta)
                    last = t == self.steps - 1
                    if last:
                        with torch.no_grad():
                            for p, g in zip(grads, kept):
                                p.grad.copy_(g)
                    else:
                        for p in grads:
                            p.grad.zero_()
                    backward(closure())
                    if not last:
                        direction = {n: p.grad.detach().clone() for n, p in active}
                return
            for t in range(self.steps):  # freelb
                delta = {n: _project(delta[n] + self.alpha * _unit(direction[n]), self.epsilon) for n in clean}
                self._move(clean, delta)
                before = {n: p.grad.detach().clone() for n, p in active}
                backward(closure() / self.steps)
                direction = {n: p.grad.detach() - before[n] for n, p in active}
        finally:
            self._move(clean, {n: torch.zeros_like(t) for n, t in clean.items()})


def train_on_embeddings(model: nn.Module, target: str = "embedding", *, epsilon: float = 1.0, method: str = "fgm",
                        alpha: float | None = None, steps: int = 3) -> EmbeddingAdversary:
    """Turn on adversarial training on the embedding named ``target``: one line, then
    ``adversary.backward(loss_fn, x, y)`` in place of ``loss.backward()``.

    Returns an :class:`EmbeddingAdversary` (see it for the methods and their losses). In the
    trainer the same is the ``EmbeddingAdversarial`` callback, or one line of a config:
    ``tricks: [fgm: {target: embedding, epsilon: 0.5}]`` (``pgd_embedding``, ``freelb``).

    Example:
        >>> import torch
        >>> from trickbag.models import text_cnn
        >>> model = text_cnn(100, 2, embed_dim=8, num_filters=4)
        >>> train_on_embeddings(model, "embedding", epsilon=0.5)
        EmbeddingAdversary(target='embedding', method='fgm', epsilon=0.5, alpha=0.4167, steps=3)
    """
    return EmbeddingAdversary(model, target, epsilon=epsilon, method=method, alpha=alpha, steps=steps)
