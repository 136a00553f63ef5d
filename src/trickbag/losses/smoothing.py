"""Label smoothing (Szegedy et al. 2016) and cross-entropy with soft targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trickbag._validate import check_choice, check_positive_int, check_range
from trickbag.losses._dtypes import compute_dtype, result_dtype

__all__ = ["smooth_labels", "soft_target_cross_entropy", "LabelSmoothingCrossEntropy", "cross_entropy_arguments"]


def smooth_labels(target: Tensor, num_classes: int, smoothing: float) -> Tensor:
    r"""Turn class indices (or soft targets) into smoothed probability vectors.

    .. math:: y^{LS} = (1 - \varepsilon)\, y + \varepsilon / C

    the same definition ``F.cross_entropy(..., label_smoothing=eps)`` uses.

    Args:
        target: ``(N,)`` class indices, or ``(N, C)`` probabilities to smooth further.
        num_classes: ``C``.
        smoothing: ``eps`` in ``[0, 1)``.

    Returns:
        ``(N, C)`` float tensor whose rows sum to one.

    Example:
        >>> import torch
        >>> smooth_labels(torch.tensor([0, 2]), 3, 0.3)
        tensor([[0.8000, 0.1000, 0.1000],
                [0.1000, 0.1000, 0.8000]])

    Reference: Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
    CVPR 2016.
    """
    check_positive_int("num_classes", num_classes)
    check_range("smoothing", smoothing, 0.0, 1.0, high_open=True)
    if target.is_floating_point():
        if target.dim() != 2 or target.shape[1] != num_classes:
            raise ValueError(
                f"soft targets must have shape (N, {num_classes}), got {tuple(target.shape)}"
            )
        probs = target
    else:
        if target.numel() and target.device.type == "cpu" and not torch.compiler.is_compiling():
            if target.min() < 0 or target.max() >= num_classes:
                raise ValueError(
                    f"target classes must be in 0..{num_classes - 1}, got values in "
                    f"{target.min().item()}..{target.max().item()}"
                )
        probs = F.one_hot(target.long(), num_classes).float()
    return probs * (1.0 - smoothing) + smoothing / num_classes


def soft_target_cross_entropy(logits: Tensor, soft_targets: Tensor, reduction: str = "mean") -> Tensor:
    r"""Cross-entropy against probability vectors: :math:`-\sum_c y_c \log \mathrm{softmax}(z)_c`.

    Args:
        logits: ``(N, C)`` scores.
        soft_targets: ``(N, C)`` probabilities (rows summing to one).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        The loss.

    Example:
        >>> import torch
        >>> z = torch.zeros(1, 4); y = torch.full((1, 4), 0.25)
        >>> round(soft_target_cross_entropy(z, y).item(), 4)  # log(4)
        1.3863
    """
    check_choice("reduction", reduction, ("none", "mean", "sum"))
    if logits.shape != soft_targets.shape:
        raise ValueError(
            f"logits and soft_targets must have the same shape, got {tuple(logits.shape)} "
            f"and {tuple(soft_targets.shape)}"
        )
    loss = -(soft_targets * F.log_softmax(logits, dim=1)).sum(dim=1)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


class LabelSmoothingCrossEntropy(nn.Module):
    """Cross-entropy with label smoothing for hard labels and for soft targets.

    Both go to torch's own ``F.cross_entropy(label_smoothing=smoothing)``, in float32 for half
    and bfloat16 logits (whose smoothing term, a sum of log-probabilities over every class,
    overflows half precision at large logits) and returned in the logits' dtype: hard (integer)
    targets with ``weight``, ``ignore_index`` and ``reduction`` as ``nn.CrossEntropyLoss``
    takes them; soft ``(N, C)`` targets (from mixup, say) are smoothed the same way
    (:func:`smooth_labels`) and weighted per class (``ignore_index`` does not apply to them).

    Args:
        smoothing: ``eps`` in ``[0, 1)``.
        weight: optional ``(C,)`` class weights, as ``nn.CrossEntropyLoss(weight=...)``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        ignore_index: hard targets equal to this count for nothing. Default -100.

    Example:
        >>> import torch
        >>> crit = LabelSmoothingCrossEntropy(0.1)
        >>> z = torch.randn(8, 5); y = torch.randint(0, 5, (8,))
        >>> bool(torch.allclose(crit(z, y), crit(z, torch.nn.functional.one_hot(y, 5).float())))
        True
    """

    weight: Tensor | None

    def __init__(
        self,
        smoothing: float = 0.1,
        *,
        weight: Tensor | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ):
        super().__init__()
        check_range("smoothing", smoothing, 0.0, 1.0, high_open=True)
        check_choice("reduction", reduction, ("none", "mean", "sum"))
        if weight is not None and (not isinstance(weight, Tensor) or weight.dim() != 1):
            raise ValueError(f"weight must be a 1-d tensor of class weights, got {weight!r}")
        self.smoothing = smoothing
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.register_buffer("weight", None if weight is None else weight.detach().clone())

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        z = logits.to(compute_dtype(logits))
        weight = None if self.weight is None else self.weight.to(z.dtype)
        if target.is_floating_point():
            if target.shape != logits.shape:
                raise ValueError(
                    f"soft targets must have the logits' shape {tuple(logits.shape)}, got {tuple(target.shape)}"
                )
            loss = F.cross_entropy(
                z, target.to(z.dtype), weight=weight, label_smoothing=self.smoothing, reduction=self.reduction
            )
        else:
            loss = F.cross_entropy(
                z,
                target,
                weight=weight,
                label_smoothing=self.smoothing,
                reduction=self.reduction,
                ignore_index=self.ignore_index,
            )
        return loss.to(result_dtype(logits, loss))

    def extra_repr(self) -> str:
        extra = "" if self.reduction == "mean" else f", reduction={self.reduction!r}"
        extra += "" if self.ignore_index == -100 else f", ignore_index={self.ignore_index}"
        return f"smoothing={self.smoothing}{extra}" + (", weighted" if self.weight is not None else "")


def cross_entropy_arguments(criterion: object) -> dict | None:
    """The arguments of a cross-entropy criterion that :class:`LabelSmoothingCrossEntropy` must
    carry over (``weight``, ``reduction``, ``ignore_index``), or None when ``criterion`` is not a
    cross-entropy it can stand in for."""
    if criterion is F.cross_entropy:
        return {}
    if isinstance(criterion, LabelSmoothingCrossEntropy):
        return {"weight": criterion.weight, "reduction": criterion.reduction, "ignore_index": criterion.ignore_index}
    if isinstance(criterion, nn.CrossEntropyLoss) and criterion.label_smoothing == 0.0:
        return {"weight": criterion.weight, "reduction": criterion.reduction, "ignore_index": criterion.ignore_index}
    return None
