"""Tier-1 functions of the tricks that live in the training loop (EMA, SWA, snapshot
ensembles, early stopping, the NaN guard); their callbacks in ``trickbag.train.callbacks``
are thin adapters over these."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from trickbag._validate import check_choice, check_range

__all__ = [
    "ema_update_",
    "average_weights_",
    "average_predictions",
    "metric_mode",
    "improved",
    "all_finite",
    "first_nonfinite_module",
]

# Metric names containing one of these are better when lower.
_LOWER_IS_BETTER = ("loss", "error", "err_", "nll", "ece", "perplexity")


@torch.no_grad()
def ema_update_(averaged: Sequence[Tensor], current: Sequence[Tensor], decay: float) -> None:
    r"""Exponential moving average, in place and in one foreach pass:
    :math:`\bar w \leftarrow d\,\bar w + (1 - d)\,w`.

    Example:
        >>> import torch
        >>> avg = [torch.zeros(2)]
        >>> ema_update_(avg, [torch.ones(2)], decay=0.9); avg[0]
        tensor([0.1000, 0.1000])

    Reference: Polyak and Juditsky, "Acceleration of Stochastic Approximation by Averaging",
    SIAM J. Control Optim. 1992.
    """
    check_range("decay", decay, 0.0, 1.0)
    torch._foreach_lerp_(list(averaged), list(current), 1.0 - decay)


@torch.no_grad()
def average_weights_(averaged: Sequence[Tensor], current: Sequence[Tensor], count: int) -> None:
    r"""Running equal-weight average (SWA): :math:`\bar w \leftarrow \bar w + (w - \bar w)/(n + 1)`
    where ``count`` = n models are already in the average.

    Example:
        >>> import torch
        >>> avg = [torch.tensor([1.0])]
        >>> average_weights_(avg, [torch.tensor([4.0])], count=2); avg[0]  # (1 + 1 + 4) / 3
        tensor([2.])

    Reference: Izmailov, Podoprikhin, Garipov, Vetrov, Wilson, "Averaging Weights Leads to Wider
    Optima and Better Generalization", UAI 2018.
    """
    torch._foreach_lerp_(list(averaged), list(current), 1.0 / (count + 1))


def average_predictions(logits: Sequence[Tensor]) -> Tensor:
    """The ensemble's class probabilities: the mean of the members' softmax outputs.

    Example:
        >>> import torch
        >>> average_predictions([torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])])
        tensor([[0.5000, 0.5000]])

    Reference: Huang, Li, Pleiss, Liu, Hopcroft, Weinberger, "Snapshot Ensembles: Train 1, get
    M for Free", ICLR 2017.
    """
    if not logits:
        raise ValueError("average_predictions needs at least one member's outputs")
    return torch.stack([torch.softmax(z.float(), dim=-1) for z in logits]).mean(0)


def metric_mode(name: str, mode: str | None = None) -> str:
    """``"min"`` or ``"max"``: ``mode`` when given, else inferred from the metric's name (losses,
    errors, NLL, calibration error and perplexity are minimised; anything else, such as
    accuracy, is maximised). The package's one rule: early stopping, checkpoints, the ablation
    (``trickbag.ablation.runner.direction_of``) and the search all decide a direction with it.

    Example:
        >>> metric_mode("val_loss"), metric_mode("val_acc"), metric_mode("val_acc", "min")
        ('min', 'max', 'min')
    """
    if mode is not None:
        return check_choice("mode", mode, ("min", "max"))
    lowered = name.lower()
    return "min" if any(word in lowered for word in _LOWER_IS_BETTER) else "max"


def improved(value: float, best: float | None, *, mode: str = "min", min_delta: float = 0.0) -> bool:
    """Early stopping's test: is ``value`` better than ``best`` by more than ``min_delta``?

    Example:
        >>> improved(0.50, 0.52, mode="min", min_delta=0.01), improved(0.515, 0.52, mode="min", min_delta=0.01)
        (True, False)

    Reference: Prechelt, "Early Stopping - But When?", Neural Networks: Tricks of the Trade, 1998.
    """
    check_choice("mode", mode, ("min", "max"))
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def all_finite(loss: Tensor, params: Sequence[Tensor] = ()) -> Tensor:
    """A 0-d bool tensor: the loss and every gradient of ``params`` are finite (no host sync).

    Gradients are tested through one foreach max-norm (the largest ``|g|`` of each tensor),
    which is finite exactly when every element is: it never squares, so large finite gradients
    (fp16 gradients of 1000 over thousands of elements, fp32 gradients of 1e20) cannot overflow
    into a false alarm, and NaN propagates through the max on CPU and CUDA.

    Example:
        >>> import torch
        >>> p = torch.nn.Parameter(torch.ones(2)); p.grad = torch.tensor([1.0, float("inf")])
        >>> bool(all_finite(torch.tensor(1.0), [p])), bool(all_finite(torch.tensor(1.0)))
        (False, True)
        >>> p.grad = torch.tensor([1e20, 1e20]); bool(all_finite(torch.tensor(1.0), [p]))
        True
    """
    ok = torch.isfinite(loss.detach().float()).all()
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        peaks = torch._foreach_norm(grads, float("inf"))
        devices = {m.device for m in peaks}
        if len(devices) > 1:  # a model split over devices
            peaks = [m.to(ok.device) for m in peaks]
        ok = ok & torch.isfinite(torch.stack(peaks)).all().to(ok.device)
    return ok


def first_nonfinite_module(model: nn.Module, inputs: Tensor) -> str | None:
    """Run the forward pass again and name the first leaf module whose output is not finite.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
        >>> with torch.no_grad(): _ = net[1].weight.fill_(float("nan"))
        >>> first_nonfinite_module(net, torch.ones(1, 2))
        '1'
    """
    found: list[str] = []
    hooks = []
    for name, module in model.named_modules():
        if name and not list(module.children()):
            def hook(mod, args, out, name=name):
                if not found and isinstance(out, Tensor) and out.is_floating_point() and not torch.isfinite(out).all():
                    found.append(name)
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for h in hooks:
            h.remove()
    return found[0] if found else None
