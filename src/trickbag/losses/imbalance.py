"""Losses for long-tailed data: class-balanced weights by the effective number of samples
(Cui et al. 2019) and logit adjustment (Menon et al. 2021)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trickbag._validate import check_choice, check_nonnegative, check_range
from trickbag.losses.focal import focal_loss, sigmoid_focal_loss

__all__ = [
    "class_counts",
    "class_balanced_weights",
    "class_balanced_loss",
    "ClassBalancedLoss",
    "class_priors",
    "adjust_logits",
    "logit_adjusted_cross_entropy",
    "LogitAdjustedLoss",
    "CLASS_BALANCED_LOSSES",
]

#: The base losses :func:`class_balanced_loss` re-weights.
CLASS_BALANCED_LOSSES = ("cross_entropy", "focal", "sigmoid", "sigmoid_focal")
_REDUCTIONS = ("none", "mean", "sum")


def class_counts(targets: Tensor, num_classes: int | None = None) -> Tensor:
    """Examples per class of ``(N,)`` class indices: ``torch.bincount`` with at least
    ``num_classes`` entries.

    Example:
        >>> class_counts(torch.tensor([0, 0, 2]), 4).tolist()
        [2, 0, 1, 0]
    """
    if targets.dim() != 1 or targets.is_floating_point():
        raise ValueError(f"targets must be (N,) class indices, got shape {tuple(targets.shape)} of {targets.dtype}")
    if targets.numel() and targets.min() < 0:
        raise ValueError(f"class indices must be >= 0, got {targets.min().item()}")
    return torch.bincount(targets.long().cpu(), minlength=num_classes or 0)


def _counts(counts: Tensor | Sequence[int]) -> Tensor:
    c = torch.as_tensor(counts, dtype=torch.float64).flatten()
    if c.numel() == 0:
        raise ValueError("counts must name at least one class")
    if not torch.isfinite(c).all() or (c <= 0).any():
        bad = [i for i, v in enumerate(c.tolist()) if not v > 0 or v != v or v == float("inf")]
        raise ValueError(
            f"every class needs a positive, finite count; classes {bad} have {[c[i].item() for i in bad]} "
            "(a class without training examples has no effective number: drop it or give it a count)"
        )
    return c


def class_balanced_weights(counts: Tensor | Sequence[int], beta: float = 0.9999) -> Tensor:
    r"""Per-class weights by the inverse effective number of samples, normalised to sum to
    the number of classes.

    .. math::
        E_{n} = \frac{1 - \beta^{n}}{1 - \beta}, \qquad
        w_c = \frac{C / E_{n_c}}{\sum_{k} 1 / E_{n_k}}

    ``beta = 0`` gives equal weights (every ``E_n = 1``); ``beta -> 1`` tends to inverse class
    frequency (``E_n -> n``). Computed in float64.

    Args:
        counts: ``(C,)`` training examples per class, all positive.
        beta: in ``[0, 1)``. Default 0.9999 (the paper's choice for long-tailed CIFAR-10).

    Returns:
        ``(C,)`` float32 weights summing to ``C``.

    Example:
        >>> w = class_balanced_weights([100, 10], beta=0.9)
        >>> [round(v, 4) for v in w.tolist()]  # E = (1 - 0.9^n) / 0.1: 9.99997, 6.5132
        [0.7889, 1.2111]
        >>> class_balanced_weights([100, 10], beta=0.0).tolist()
        [1.0, 1.0]

    Reference: Cui, Jia, Lin, Song, Belongie, "Class-Balanced Loss Based on Effective Number
    of Samples", CVPR 2019.
    """
    check_range("beta", beta, 0.0, 1.0, high_open=True)
    c = _counts(counts)
    # 1 - beta^n as -expm1(n log beta): exact for beta near 1, where 1 - beta^n loses digits.
    effective = -torch.expm1(c * torch.log(torch.tensor(beta, dtype=torch.float64))) / (1.0 - beta) if beta > 0 \
        else torch.ones_like(c)
    w = 1.0 / effective
    return (w * c.numel() / w.sum()).float()


def _check_logits(logits: Tensor, target: Tensor, num_classes: int, what: str) -> None:
    if logits.dim() != 2:
        raise ValueError(f"{what} takes (N, C) logits, got shape {tuple(logits.shape)}")
    if logits.shape[1] != num_classes:
        raise ValueError(
            f"{what} has class statistics for {num_classes} classes but the logits have {logits.shape[1]} "
            "columns (does a class have no training examples, or does the model have a different head?)"
        )
    if target.shape != logits.shape[:1] or target.is_floating_point():
        raise ValueError(f"{what} takes (N,) class-index targets, got shape {tuple(target.shape)} of {target.dtype}")


def class_balanced_loss(
    logits: Tensor,
    target: Tensor,
    weights: Tensor,
    *,
    loss: str = "cross_entropy",
    gamma: float = 2.0,
    reduction: str = "mean",
) -> Tensor:
    r"""A loss re-weighted per example by its class's weight: :math:`\mathrm{CB}(z, y) = w_y\,L(z, y)`.

    The base losses ``L``: softmax ``"cross_entropy"``; softmax ``"focal"``
    (:func:`~trickbag.losses.focal_loss`); ``"sigmoid"`` (binary cross-entropy of each class
    against the one-hot target, summed over classes) and ``"sigmoid_focal"`` (the same with
    the focal factor, no alpha). ``"mean"`` averages over the ``N`` examples, as the paper
    does; note that ``F.cross_entropy(weight=w)`` divides by :math:`\sum_i w_{y_i}` instead
    (``reduction="sum"`` agrees with it exactly).

    Args:
        logits: ``(N, C)`` scores.
        target: ``(N,)`` class indices.
        weights: ``(C,)`` class weights, e.g. :func:`class_balanced_weights`.
        loss: one of :data:`CLASS_BALANCED_LOSSES`. Default ``"cross_entropy"``.
        gamma: focusing parameter of the focal losses. Default 2.0.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        The loss.

    Example:
        >>> z, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
        >>> w = torch.tensor([0.5, 1.5])
        >>> per = F.cross_entropy(z, y, reduction="none")
        >>> bool(torch.isclose(class_balanced_loss(z, y, w), (w[y] * per).mean()))
        True

    Reference: Cui, Jia, Lin, Song, Belongie, "Class-Balanced Loss Based on Effective Number
    of Samples", CVPR 2019.
    """
    check_choice("loss", loss, CLASS_BALANCED_LOSSES)
    check_choice("reduction", reduction, _REDUCTIONS)
    check_nonnegative("gamma", gamma)
    _check_logits(logits, target, weights.numel(), "class_balanced_loss")
    w = weights.to(device=logits.device, dtype=torch.promote_types(logits.dtype, torch.float32))[target]
    if loss == "cross_entropy":
        per = F.cross_entropy(logits, target, reduction="none")
    elif loss == "focal":
        per = focal_loss(logits, target, gamma=gamma, reduction="none")
    else:
        onehot = F.one_hot(target.long(), logits.shape[1]).to(logits.dtype)
        if loss == "sigmoid":
            per = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none").sum(1)
        else:
            per = sigmoid_focal_loss(logits, onehot, gamma=gamma, alpha=-1.0).sum(1)
    per = w * per
    if reduction == "mean":
        return per.mean()
    if reduction == "sum":
        return per.sum()
    return per


class ClassBalancedLoss(nn.Module):
    """Module form of :func:`class_balanced_loss` with the weights computed from ``counts``
    by :func:`class_balanced_weights` (kept as a buffer).

    Example:
        >>> crit = ClassBalancedLoss([500, 50, 5], beta=0.99, loss="focal")
        >>> crit.weights.sum().item(), crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 2])).dim()
        (3.0, 0)
    """

    weights: Tensor

    def __init__(self, counts: Tensor | Sequence[int], *, beta: float = 0.9999, loss: str = "cross_entropy",
                 gamma: float = 2.0, reduction: str = "mean"):
        super().__init__()
        check_choice("loss", loss, CLASS_BALANCED_LOSSES)
        check_choice("reduction", reduction, _REDUCTIONS)
        check_nonnegative("gamma", gamma)
        self.register_buffer("weights", class_balanced_weights(counts, beta))
        self.beta, self.loss, self.gamma, self.reduction = beta, loss, gamma, reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return class_balanced_loss(logits, target, self.weights, loss=self.loss, gamma=self.gamma,
                                   reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, loss={self.loss!r}, classes={self.weights.numel()}"


def class_priors(counts: Tensor | Sequence[int]) -> Tensor:
    """Class frequencies ``n_c / sum(n)`` (float64) from positive counts.

    Example:
        >>> class_priors([3, 1]).tolist()
        [0.75, 0.25]
    """
    c = _counts(counts)
    return c / c.sum()


def adjust_logits(logits: Tensor, priors: Tensor, tau: float = 1.0) -> Tensor:
    r"""Post-hoc logit adjustment: :math:`z_c - \tau \log \pi_c`, whose argmax estimates the
    balanced-error-optimal class from a model trained on the long-tailed data.

    Example:
        >>> adjust_logits(torch.tensor([[1.0, 0.5]]), torch.tensor([0.9, 0.1])).argmax(1).item()
        1

    Reference: Menon, Jayasumana, Rawat, Jain, Veit, Kumar, "Long-Tail Learning via Logit
    Adjustment", ICLR 2021.
    """
    check_nonnegative("tau", tau)
    return logits - tau * priors.to(device=logits.device, dtype=logits.dtype).log()


def logit_adjusted_cross_entropy(logits: Tensor, target: Tensor, priors: Tensor, *, tau: float = 1.0,
                                 reduction: str = "mean") -> Tensor:
    r"""The logit-adjusted loss: cross-entropy of the logits shifted by the log class priors.

    .. math:: \ell(y, z) = -\log \frac{e^{z_y + \tau \log \pi_y}}{\sum_{c} e^{z_c + \tau \log \pi_c}}

    Rare classes must win by a larger margin during training, so the raw logits of the trained
    model are already balanced: predict with ``argmax z`` (no adjustment at test time).

    Args:
        logits: ``(N, C)`` scores.
        target: ``(N,)`` class indices.
        priors: ``(C,)`` training class frequencies (:func:`class_priors`).
        tau: the adjustment's scale. Default 1.0 (the paper's choice).
        reduction: as ``F.cross_entropy``.

    Example:
        >>> z, y, pi = torch.zeros(2, 2), torch.tensor([0, 1]), torch.tensor([0.8, 0.2])
        >>> round(logit_adjusted_cross_entropy(z, y, pi).item(), 4)  # (-log 0.8 - log 0.2) / 2
        0.9163

    Reference: Menon, Jayasumana, Rawat, Jain, Veit, Kumar, "Long-Tail Learning via Logit
    Adjustment", ICLR 2021.
    """
    check_nonnegative("tau", tau)
    check_choice("reduction", reduction, _REDUCTIONS)
    _check_logits(logits, target, priors.numel(), "logit_adjusted_cross_entropy")
    shifted = logits + tau * priors.to(device=logits.device, dtype=logits.dtype).log()
    return F.cross_entropy(shifted, target, reduction=reduction)


class LogitAdjustedLoss(nn.Module):
    """Module form of :func:`logit_adjusted_cross_entropy` with the priors from ``counts``
    (kept as a buffer).

    Example:
        >>> LogitAdjustedLoss([90, 10])(torch.zeros(1, 2), torch.tensor([1])).item() > 2.0  # -log 0.1
        True
    """

    priors: Tensor

    def __init__(self, counts: Tensor | Sequence[int], *, tau: float = 1.0, reduction: str = "mean"):
        super().__init__()
        check_nonnegative("tau", tau)
        check_choice("reduction", reduction, _REDUCTIONS)
        self.register_buffer("priors", class_priors(counts).float())
        self.tau, self.reduction = tau, reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return logit_adjusted_cross_entropy(logits, target, self.priors, tau=self.tau, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, classes={self.priors.numel()}"
