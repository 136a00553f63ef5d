"""Mixup and CutMix: mix pairs of examples and their targets."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from trickbag._validate import check_positive
from trickbag.augment._random import beta, check_images, integers, permutation

__all__ = ["Mixed", "mixup_batch", "cutmix_batch", "mix_targets"]


class Mixed(NamedTuple):
    """A mixed batch: ``inputs``, the original targets ``targets_a``, the partners' targets
    ``targets_b`` and the weight ``lam`` of ``targets_a`` (a 0-d tensor on the batch's device)."""

    inputs: Tensor
    targets_a: Tensor
    targets_b: Tensor
    lam: Tensor


def _check(x: Tensor, y: Tensor, alpha: float) -> None:
    check_positive("alpha", alpha)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"inputs and targets disagree on the batch size: {x.shape[0]} vs {y.shape[0]}")


def mixup_batch(x: Tensor, y: Tensor, *, alpha: float, generator: torch.Generator | None = None) -> Mixed:
    r"""Mixup (Zhang et al. 2018): convex combinations of random pairs of examples.

    .. math:: \tilde x = \lambda x + (1 - \lambda) x_{\pi},\quad \lambda \sim \mathrm{Beta}(\alpha, \alpha)

    with one :math:`\lambda` for the batch and :math:`\pi` a random permutation (any batch
    size works). Floating-point images are mixed in their own dtype; integer images (uint8
    straight from a loader) are mixed in float32 and come back as float32 on the same 0..255
    scale, since a mixed pixel is not an integer. Train with ``lam * loss(out, targets_a) + (1 - lam) * loss(out, targets_b)``,
    which equals the loss against mixed soft targets for cross-entropy, label-smoothed or not;
    targets may be class indices, soft or multi-label.

    Example:
        >>> import torch
        >>> x, y = torch.rand(5, 3, 4, 4), torch.arange(5)
        >>> m = mixup_batch(x, y, alpha=0.2, generator=torch.Generator().manual_seed(0))
        >>> perm = m.targets_b  # here labels are indices, so they give the permutation
        >>> bool(torch.allclose(m.inputs, m.lam * x + (1 - m.lam) * x[perm]))
        True

    Reference: Zhang, Cisse, Dauphin, Lopez-Paz, "mixup: Beyond Empirical Risk Minimization",
    ICLR 2018.
    """
    _check(x, y, alpha)
    lam = beta(alpha, x, generator)
    perm = permutation(x.shape[0], x, generator)
    if not x.is_floating_point():
        x = x.float()
    w = lam.to(x.dtype)
    mixed = w * x + (1 - w) * x[perm]
    return Mixed(mixed, y, y[perm], lam)


def cutmix_batch(x: Tensor, y: Tensor, *, alpha: float, generator: torch.Generator | None = None) -> Mixed:
    r"""CutMix (Yun et al. 2019): paste a box from a random partner into every image.

    A box of area :math:`(1 - \lambda_0) HW` with :math:`\lambda_0 \sim \mathrm{Beta}(\alpha,
    \alpha)` and a uniform centre, clipped at the border, is copied from the permuted batch.
    ``lam`` is corrected to the pasted area: :math:`\lambda = 1 - \mathrm{area}/(HW)`.

    Example:
        >>> import torch
        >>> x, y = torch.zeros(4, 1, 8, 8), torch.arange(4)
        >>> x += y[:, None, None, None]  # image i is filled with i
        >>> m = cutmix_batch(x, y, alpha=1.0, generator=torch.Generator().manual_seed(1))
        >>> kept = (m.inputs == x).float().mean(dim=(1, 2, 3))  # fraction of own pixels
        >>> bool(torch.allclose(kept[m.targets_b != y], m.lam))
        True

    Reference: Yun, Han, Oh, Chun, Choe, Yoo, "CutMix: Regularization Strategy to Train Strong
    Classifiers with Localizable Features", ICCV 2019.
    """
    check_images(x)
    _check(x, y, alpha)
    n, _, h, w = x.shape
    lam0 = beta(alpha, x, generator)
    perm = permutation(n, x, generator)
    ratio = torch.sqrt(1.0 - lam0)
    cut_h, cut_w = (h * ratio).long(), (w * ratio).long()
    cy = integers(1, 0, h - 1, x, generator)[0]
    cx = integers(1, 0, w - 1, x, generator)[0]
    y0, y1 = (cy - cut_h // 2).clamp(0, h), (cy + cut_h - cut_h // 2).clamp(0, h)
    x0, x1 = (cx - cut_w // 2).clamp(0, w), (cx + cut_w - cut_w // 2).clamp(0, w)
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    box = ((rows >= y0) & (rows < y1))[:, None] & ((cols >= x0) & (cols < x1))[None, :]
    mixed = torch.where(box, x[perm], x)
    lam = 1.0 - ((y1 - y0) * (x1 - x0)).float() / (h * w)
    return Mixed(mixed, y, y[perm], lam)


def mix_targets(m: Mixed, num_classes: int | None = None) -> Tensor:
    """The mixed soft targets ``lam * y_a + (1 - lam) * y_b`` (index labels are one-hot encoded
    with ``num_classes``).

    Example:
        >>> import torch
        >>> m = Mixed(torch.zeros(1), torch.tensor([0]), torch.tensor([2]), torch.tensor(0.75))
        >>> mix_targets(m, 3)
        tensor([[0.7500, 0.0000, 0.2500]])
    """
    a, b = m.targets_a, m.targets_b
    if not a.is_floating_point():
        if num_classes is None:
            raise ValueError("mix_targets needs num_classes to one-hot encode index labels")
        a = torch.nn.functional.one_hot(a.long(), num_classes).float()
        b = torch.nn.functional.one_hot(b.long(), num_classes).float()
    return m.lam * a + (1 - m.lam) * b
