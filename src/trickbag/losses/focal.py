"""Focal loss (Lin et al. 2017), multi-class softmax and binary/multi-label sigmoid forms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trickbag._validate import check_choice, check_nonnegative, check_real
from trickbag.losses._dtypes import compute_dtype, result_dtype

__all__ = ["focal_loss", "FocalLoss", "sigmoid_focal_loss", "SigmoidFocalLoss"]

_REDUCTIONS = ("none", "mean", "sum")


def _check_class_targets(logits: Tensor, target: Tensor, ignore_index: int) -> None:
    if logits.dim() < 2:
        raise ValueError(f"logits must have shape (N, C, ...), got {tuple(logits.shape)}")
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"target must have shape {expected} for logits of shape {tuple(logits.shape)}, "
            f"got {tuple(target.shape)}"
        )
    if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"target must hold class indices (an integer tensor), got {target.dtype}")
    # Range checks cost a host sync on an accelerator; there, an out-of-range class trips the
    # same device-side assert as F.cross_entropy does. Under torch.compile the check would be
    # a data-dependent branch (a graph break, an error with fullgraph=True): it is left out.
    if target.device.type == "cpu" and target.numel() and not torch.compiler.is_compiling():
        valid = target[target != ignore_index]
        if valid.numel() and (valid.min() < 0 or valid.max() >= logits.shape[1]):
            bad = valid[(valid < 0) | (valid >= logits.shape[1])][0].item()
            raise ValueError(
                f"target class {bad} is out of range for {logits.shape[1]} classes "
                f"(valid: 0..{logits.shape[1] - 1}, or ignore_index={ignore_index})"
            )


def focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    r"""Multi-class softmax focal loss.

    .. math:: \mathrm{FL}(p_t) = -\alpha_t (1 - p_t)^\gamma \log p_t

    where :math:`p_t` is the softmax probability of the true class. Computed from
    ``log_softmax`` so that large logits never give NaN or inf. Half and bfloat16 logits are
    computed in float32 and float64 logits in float64; the loss comes back in the logits' dtype
    (float32 under autocast, as ``F.cross_entropy``).

    Args:
        logits: ``(N, C)`` or ``(N, C, d1, ...)`` unnormalised scores.
        target: ``(N,)`` or ``(N, d1, ...)`` class indices.
        gamma: focusing parameter, ``>= 0``; ``0`` gives cross-entropy. Default 2.0.
        alpha: ``None`` (no weighting), a float that scales every term, or a ``(C,)`` tensor of
            per-class weights. With a weight tensor the ``"mean"`` reduction divides by the sum
            of the weights of the non-ignored targets, as ``F.cross_entropy(weight=...)`` does,
            so ``gamma=0`` equals weighted cross-entropy.
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.
        ignore_index: targets equal to this contribute nothing. Default -100.

    Returns:
        The loss, a scalar unless ``reduction="none"``.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.0, -1.0]]); target = torch.tensor([0])
        >>> round(focal_loss(logits, target, gamma=0.0).item(), 4)  # cross-entropy
        0.1698
        >>> round(focal_loss(logits, target, gamma=2.0).item(), 6)  # (1 - 0.844)^2 * 0.1698
        0.004144

    Reference: Lin, Goyal, Girshick, He, Dollar, "Focal Loss for Dense Object Detection",
    ICCV 2017.
    """
    check_nonnegative("gamma", gamma)
    check_choice("reduction", reduction, _REDUCTIONS)
    _check_class_targets(logits, target, ignore_index)
    num_classes = logits.shape[1]

    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target)).long()
    log_prob = F.log_softmax(logits.to(compute_dtype(logits)), dim=1)
    log_pt = log_prob.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    # 1 - pt from expm1 keeps precision for confident predictions; the clamp keeps the
    # derivative of (1 - pt) ** gamma finite at pt == 1 when 0 < gamma < 1 (large margins
    # round pt to exactly 1 in float32). pow(x, 0) == 1, so gamma=0 is exact cross-entropy.
    one_minus_pt = (-torch.expm1(log_pt)).clamp_min(torch.finfo(log_pt.dtype).tiny)
    loss = -(one_minus_pt**gamma) * log_pt

    weight = None
    if isinstance(alpha, Tensor):
        if alpha.shape != (num_classes,):
            raise ValueError(
                f"alpha as a tensor must have shape ({num_classes},) (one weight per class), "
                f"got {tuple(alpha.shape)}"
            )
        weight = alpha.to(device=loss.device, dtype=loss.dtype)[safe_target]
        loss = loss * weight
    elif alpha is not None:
        check_real("alpha", alpha)
        loss = loss * alpha

    loss = torch.where(valid, loss, torch.zeros_like(loss))
    if reduction == "sum":
        loss = loss.sum()
    elif reduction == "mean":
        if weight is not None:
            denom = torch.where(valid, weight, torch.zeros_like(weight)).sum()
        else:
            denom = valid.sum()
        loss = loss.sum() / denom
    return loss.to(result_dtype(logits, loss))


class FocalLoss(nn.Module):
    """Module form of :func:`focal_loss`; ``alpha`` as a tensor is kept as a buffer."""

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: float | Tensor | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__()
        check_nonnegative("gamma", gamma)
        check_choice("reduction", reduction, _REDUCTIONS)
        self.gamma = gamma
        self.reduction = reduction
        self.ignore_index = ignore_index
        if isinstance(alpha, Tensor):
            self.register_buffer("alpha", alpha.detach().clone().float())
        else:
            self.alpha = alpha

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return focal_loss(
            logits,
            target,
            gamma=self.gamma,
            alpha=self.alpha,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, reduction={self.reduction!r}"


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float = 0.25,
    reduction: str = "none",
) -> Tensor:
    r"""Binary / multi-label focal loss on independent sigmoids (RetinaNet's form).

    .. math::
        \mathrm{FL} = -\alpha_t (1 - p_t)^\gamma \log p_t,\quad
        p_t = p\,y + (1-p)(1-y),\quad \alpha_t = \alpha y + (1-\alpha)(1-y)

    Numerically equal to ``torchvision.ops.sigmoid_focal_loss``. ``alpha < 0`` disables the
    class weighting, as there.

    Args:
        logits: scores of any shape.
        targets: same shape, 0/1 (or soft) labels.
        gamma: focusing parameter, ``>= 0``. Default 2.0.
        alpha: weight of positives in ``[0, 1]``, or negative for none. Default 0.25.
        reduction: ``"none"`` (default), ``"mean"`` or ``"sum"``.

    Returns:
        The loss, elementwise unless reduced.

    Example:
        >>> import torch
        >>> x = torch.tensor([3.0, -3.0]); y = torch.tensor([1.0, 1.0])
        >>> sigmoid_focal_loss(x, y).round(decimals=4)  # the miss costs far more than the hit
        tensor([0.0000, 0.6916])

    Reference: Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
    """
    check_nonnegative("gamma", gamma)
    check_real("alpha", alpha)
    if alpha > 1:
        raise ValueError(f"alpha must be in [0, 1] (or negative to disable), got {alpha!r}")
    check_choice("reduction", reduction, _REDUCTIONS)
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits and targets must have the same shape, got {tuple(logits.shape)} "
            f"and {tuple(targets.shape)}"
        )
    targets = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    # As in focal_loss: at saturated logits 1 - p_t is exactly 0, where the derivative of
    # (1 - p_t) ** gamma is infinite for 0 < gamma < 1 (NaN gradients); the clamp keeps it finite.
    loss = ce * ((1 - p_t).clamp_min(torch.finfo(p_t.dtype).tiny) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


class SigmoidFocalLoss(nn.Module):
    """Module form of :func:`sigmoid_focal_loss` (default reduction ``"mean"`` for training)."""

    def __init__(self, *, gamma: float = 2.0, alpha: float = 0.25, reduction: str = "mean"):
        super().__init__()
        check_nonnegative("gamma", gamma)
        check_choice("reduction", reduction, _REDUCTIONS)
        self.gamma, self.alpha, self.reduction = gamma, alpha, reduction

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return sigmoid_focal_loss(
            logits, targets, gamma=self.gamma, alpha=self.alpha, reduction=self.reduction
        )
