"""Robust accuracy: accuracy on adversarial examples crafted against the model, example by example."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trickbag._validate import check_choice, check_nonnegative, check_positive, check_positive_int
from trickbag.adversarial._state import eval_mode
from trickbag.adversarial.inputs import fast_fgsm, fgsm, pgd

__all__ = ["ATTACKS", "robust_accuracy", "make_attack"]

#: Attacks :func:`robust_accuracy` knows by name.
ATTACKS = ("none", "fgsm", "fast_fgsm", "pgd")

Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]


def make_attack(
    attack: str,
    *,
    eps: float,
    alpha: float | None = None,
    steps: int = 20,
    norm: str = "linf",
    random_start: bool = True,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    generator: torch.Generator | None = None,
) -> Attack:
    """``attack(model, x, y) -> x_adv`` for an attack named in :data:`ATTACKS`.

    ``pgd`` takes ``steps`` steps of size ``alpha`` (default ``2.5 * eps / steps``, Madry et
    al.'s rule, so that the steps can cross the ball and back); ``fast_fgsm`` steps ``alpha``
    (default ``1.25 * eps``) from a random start; ``fgsm`` one step of ``eps``; ``none``
    returns the inputs (clean accuracy).

    Example:
        >>> import torch
        >>> attack = make_attack("pgd", eps=0.1, steps=5)
        >>> x = torch.full((2, 4), 0.5)
        >>> bool(((attack(torch.nn.Linear(4, 2), x, torch.tensor([0, 1])) - x).abs() <= 0.1 + 1e-7).all())
        True
    """
    check_choice("attack", attack, ATTACKS)
    check_nonnegative("eps", eps)
    check_positive_int("steps", steps)
    if attack == "none" or eps == 0:
        return lambda model, x, y: x
    if attack == "fgsm":
        return lambda model, x, y: fgsm(model, x, y, eps=eps, loss_fn=loss_fn, clamp=clamp)
    if attack == "fast_fgsm":
        return lambda model, x, y: fast_fgsm(model, x, y, eps=eps, alpha=alpha, loss_fn=loss_fn, clamp=clamp,
                                             generator=generator)
    step = alpha if alpha is not None else 2.5 * eps / steps
    check_positive("alpha", step)
    return lambda model, x, y: pgd(model, x, y, eps=eps, alpha=step, steps=steps, norm=norm, random_start=random_start,
                                   loss_fn=loss_fn, clamp=clamp, generator=generator)


def _batches(data: Any) -> Iterable[tuple[Tensor, Tensor]]:
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        return [tuple(data)]
    return data


def robust_accuracy(
    model: nn.Module,
    data: Iterable[tuple[Tensor, Tensor]] | tuple[Tensor, Tensor],
    *,
    attack: str | Attack = "pgd",
    eps: float = 0.1,
    alpha: float | None = None,
    steps: int = 20,
    norm: str = "linf",
    clamp: tuple[float, float] | None = (0.0, 1.0),
    preprocess: nn.Module | None = None,
    max_examples: int | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    seed: int | None = 0,
) -> float:
    r"""The share of examples still classified correctly after an attack of radius ``eps``.

    .. math::
        \mathrm{acc}_\varepsilon = \frac{1}{n} \sum_i
        \mathbb{1}\big[\arg\max f(x_i + \delta_i) = y_i\big],\quad
        \delta_i = \mathrm{attack}(f, x_i, y_i),\ \lVert \delta_i \rVert \le \varepsilon

    Each example is attacked on its own label (an example misclassified when clean counts as
    not robust: the attack starts from it and the model must be right at the end). The model
    runs in eval mode and is left exactly as found. Robust accuracy under an attack is an upper
    bound on the true robust accuracy: a stronger attack can only lower it.

    Args:
        model: the classifier.
        data: an iterable of ``(inputs, targets)`` batches (a loader) or one ``(x, y)`` pair.
        attack: a name in :data:`ATTACKS` (default ``"pgd"``) or ``attack(model, x, y) -> x_adv``.
        eps: the radius, in the units of ``data`` (``[0, 1]`` pixels for raw images). Default 0.1.
        alpha, steps, norm: the attack's step (default per :func:`make_attack`), its number of
            steps (PGD; default 20) and ball (``"linf"`` or ``"l2"``).
        clamp: the valid input range the adversarial inputs are clipped to, or ``None``.
        preprocess: applied to the (adversarial) inputs before the model, e.g. a
            :class:`~trickbag.augment.Normalizer` with ``scale=1``: the attack then works on
            raw pixels while the model sees normalised ones.
        max_examples: stop after this many examples (PGD-20 costs 21 forward and backward
            passes per example).
        loss_fn: the loss the attack ascends. Default cross-entropy.
        seed: seeds the attack's random start (a private generator: the global random state
            is untouched, so evaluating does not change the training that follows); ``None``
            uses the global generator.

    Returns:
        The robust accuracy in ``[0, 1]``.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad(): model.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        Parameter containing:
        tensor([[ 1.,  0.],
                [-1.,  0.]], requires_grad=True)
        >>> x, y = torch.tensor([[0.3, 0.5], [0.05, 0.5]]), torch.tensor([0, 0])  # margins 0.6 and 0.1
        >>> robust_accuracy(model, (x, y), attack="fgsm", eps=0.1, clamp=None)  # robust: margin > eps * |w0 - w1|_1
        0.5

    Reference: Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant
    to Adversarial Attacks", ICLR 2018 (PGD as the evaluation attack).
    """
    if max_examples is not None:
        check_positive_int("max_examples", max_examples)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    if callable(attack) and not isinstance(attack, str):
        fn = attack
    else:
        fn = make_attack(attack, eps=eps, alpha=alpha, steps=steps, norm=norm, clamp=clamp, loss_fn=loss_fn,
                         generator=generator)
    target = nn.Sequential(preprocess, model) if preprocess is not None else model
    correct, seen = 0, 0
    with eval_mode(target):
        for x, y in _batches(data):
            if max_examples is not None and seen >= max_examples:
                break
            if max_examples is not None:
                x, y = x[: max_examples - seen], y[: max_examples - seen]
            if not x.is_floating_point():
                raise ValueError(f"robust_accuracy needs floating-point inputs on the scale of eps, got {x.dtype} "
                                 "(integer images: pass x.float() / 255 with eps on [0, 1] pixels, or a "
                                 "preprocess that takes float inputs)")
            x, y = x.to(device), y.to(device)
            adv = fn(target, x, y)
            with torch.no_grad():
                correct += int((target(adv).argmax(1) == y).sum())
            seen += y.shape[0]
    if seen == 0:
        raise ValueError("robust_accuracy got no examples")
    return correct / seen
