"""Input-space adversarial examples: FGSM, iterative FGSM and PGD."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trickbag._validate import check_choice, check_nonnegative, check_positive, check_positive_int
from trickbag.adversarial._state import eval_mode

__all__ = ["fgsm", "fast_fgsm", "ifgsm", "pgd"]

Loss = Callable[[Tensor, Tensor], Tensor]


def _check(x: Tensor, y: Tensor, eps: float, clamp) -> None:
    check_nonnegative("eps", eps)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y disagree on the batch size: {x.shape[0]} vs {y.shape[0]}")
    if clamp is not None and (len(clamp) != 2 or clamp[0] >= clamp[1]):
        raise ValueError(f"clamp must be None or (low, high) with low < high, got {clamp!r}")


def _input_grad(model: nn.Module, x: Tensor, y: Tensor, loss_fn: Loss) -> Tensor:
    """d loss / d x, without touching any parameter's .grad (torch.autograd.grad, not backward)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(model(x), y)
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _clamp(x: Tensor, clamp) -> Tensor:
    return x if clamp is None else x.clamp(clamp[0], clamp[1])


def _norms(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, *([1] * (t.dim() - 1)))


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    loss_fn: Loss = F.cross_entropy,
    clamp: tuple[float, float] | None = (0.0, 1.0),
) -> Tensor:
    r"""Fast gradient sign method: one step of size ``eps`` along the sign of the input gradient.

    .. math:: x_{adv} = \mathrm{clip}(x + \varepsilon\, \mathrm{sign}(\nabla_x L(f(x), y)))

    The model runs in eval mode and is left exactly as found: parameters, ``.grad``,
    ``requires_grad`` flags, buffers and each module's train/eval flag.

    Args:
        model: the classifier; x: inputs; y: targets.
        eps: L-infinity size of the perturbation (in the inputs' units).
        loss_fn: ``loss_fn(outputs, y)``. Default cross-entropy.
        clamp: valid input range, or ``None``. Default ``(0, 1)``.

    Returns:
        The adversarial inputs (detached).

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(4, 3)
        >>> x, y = torch.full((2, 4), 0.5), torch.tensor([0, 1])
        >>> (fgsm(model, x, y, eps=0.1) - x).abs().max().item() <= 0.1 + 1e-7
        True

    Reference: Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples",
    ICLR 2015.
    """
    _check(x, y, eps, clamp)
    with eval_mode(model):
        grad = _input_grad(model, x, y, loss_fn)
    return _clamp(x.detach() + eps * grad.sign(), clamp).detach()


def fast_fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    alpha: float | None = None,
    loss_fn: Loss = F.cross_entropy,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""FGSM from a random start, the attack of "fast" adversarial training (Wong et al. 2020).

    .. math::
        \delta_0 \sim U[-\varepsilon, \varepsilon]^d,\quad
        \delta = \Pi_{[-\varepsilon, \varepsilon]}\big(\delta_0 + \alpha\,
        \mathrm{sign}(\nabla_x L(f(x + \delta_0), y))\big),\quad
        x_{adv} = \mathrm{clip}(x + \delta)

    Plain FGSM (no random start, step ``eps``) trained on for long enough ends in *catastrophic
    overfitting*: the model learns to mask its gradient at the clean point, FGSM accuracy climbs
    while PGD accuracy falls to zero. The random start and a step of ``1.25 eps`` avoid it at
    the usual budgets, at the cost of one gradient computation per example (about 2x a standard
    step). Watch for it with :func:`detect_catastrophic_overfitting`.

    Args:
        model: the classifier; x: inputs; y: targets.
        eps: L-infinity radius of the perturbation (in the inputs' units).
        alpha: the signed step. Default ``1.25 * eps`` (the paper's choice).
        loss_fn: ``loss_fn(outputs, y)``. Default cross-entropy.
        clamp: valid input range, or ``None``. Default ``(0, 1)``.
        generator: optional ``torch.Generator`` for the random start.

    Returns:
        The adversarial inputs (detached); the model is left exactly as found.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(4, 3); x, y = torch.full((2, 4), 0.5), torch.tensor([0, 1])
        >>> bool(((fast_fgsm(model, x, y, eps=0.1) - x).abs() <= 0.1 + 1e-7).all())
        True

    Reference: Wong, Rice, Kolter, "Fast is Better than Free: Revisiting Adversarial Training",
    ICLR 2020.
    """
    _check(x, y, eps, clamp)
    alpha = 1.25 * eps if alpha is None else alpha
    check_positive("alpha", alpha)
    x = x.detach()
    where = generator.device if generator is not None else x.device
    delta = (torch.rand(x.shape, device=where, generator=generator, dtype=x.dtype).to(x.device) * 2 - 1) * eps
    start = _clamp(x + delta, clamp)
    with eval_mode(model):
        grad = _input_grad(model, start, y, loss_fn)
    delta = (start - x + alpha * grad.sign()).clamp(-eps, eps)
    return _clamp(x + delta, clamp).detach()


def ifgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    loss_fn: Loss = F.cross_entropy,
    clamp: tuple[float, float] | None = (0.0, 1.0),
) -> Tensor:
    r"""Iterative FGSM (basic iterative method): ``steps`` sign steps of size ``alpha``, each
    followed by projection onto the L-infinity ball of radius ``eps`` around ``x`` and the valid
    range. No random start.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(4, 3); x, y = torch.full((2, 4), 0.5), torch.tensor([0, 1])
        >>> adv = ifgsm(model, x, y, eps=0.05, alpha=0.02, steps=5)
        >>> bool((adv - x).abs().max() <= 0.05 + 1e-7)
        True

    Reference: Kurakin, Goodfellow, Bengio, "Adversarial Examples in the Physical World",
    ICLR Workshop 2017.
    """
    return pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, random_start=False, norm="linf",
               loss_fn=loss_fn, clamp=clamp)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = True,
    norm: str = "linf",
    loss_fn: Loss = F.cross_entropy,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Projected gradient descent (Madry et al. 2018), in the L-infinity or L2 ball.

    Starts at a uniform random point of the ball (``random_start``), then repeats ``steps``
    times: a step of size ``alpha`` along ``sign(grad)`` (L-infinity) or ``grad / ||grad||``
    (L2, per example), projection back onto the ball of radius ``eps`` around ``x``, and
    clipping to ``clamp``. The model is left exactly as found.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(4, 3); x, y = torch.full((3, 4), 0.5), torch.tensor([0, 1, 2])
        >>> adv = pgd(model, x, y, eps=0.3, alpha=0.1, steps=7, norm="l2")
        >>> bool(((adv - x).flatten(1).norm(dim=1) <= 0.3 + 1e-6).all())
        True

    Reference: Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant
    to Adversarial Attacks", ICLR 2018.
    """
    _check(x, y, eps, clamp)
    check_positive("alpha", alpha)
    check_positive_int("steps", steps)
    check_choice("norm", norm, ("linf", "l2"))
    x = x.detach()
    if random_start:
        where = generator.device if generator is not None else x.device
        if norm == "linf":
            delta = (torch.rand(x.shape, device=where, generator=generator, dtype=x.dtype).to(x.device) * 2 - 1) * eps
        else:
            direction = torch.randn(x.shape, device=where, generator=generator, dtype=x.dtype).to(x.device)
            radius = torch.rand(x.shape[0], device=where, generator=generator, dtype=x.dtype).to(x.device)
            radius = radius ** (1.0 / x[0].numel())  # uniform in the ball
            delta = direction / _norms(direction) * eps * radius.reshape(-1, *([1] * (x.dim() - 1)))
        adv = _clamp(x + delta, clamp)
    else:
        adv = x.clone()
    with eval_mode(model):
        for _ in range(steps):
            grad = _input_grad(model, adv, y, loss_fn)
            if norm == "linf":
                adv = adv + alpha * grad.sign()
                adv = torch.min(torch.max(adv, x - eps), x + eps)
            else:
                adv = adv + alpha * grad / _norms(grad)
                delta = adv - x
                delta = delta * torch.clamp(eps / _norms(delta), max=1.0)
                adv = x + delta
            adv = _clamp(adv, clamp).detach()
    return adv
