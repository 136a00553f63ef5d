"""Additive noise and cutout."""

from __future__ import annotations

import torch
from torch import Tensor

from trickbag._validate import check_nonnegative
from trickbag.augment._random import check_images, integers, normal

__all__ = ["gaussian_noise", "cutout", "cutout_mask"]


def gaussian_noise(x: Tensor, std: float, *, generator: torch.Generator | None = None) -> Tensor:
    """Add independent zero-mean Gaussian noise of standard deviation ``std``.

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 1, 200, 200)
        >>> round(gaussian_noise(x, 0.5, generator=torch.Generator().manual_seed(0)).std().item(), 1)
        0.5
    """
    check_nonnegative("std", std)
    if not x.is_floating_point():
        raise ValueError(f"gaussian_noise needs floating-point inputs, got {x.dtype}")
    return x + std * normal(x.shape, x, generator)


def cutout_mask(n: int, h: int, w: int, size: int, like: Tensor, generator=None) -> Tensor:
    """Boolean ``(n, 1, h, w)`` mask, True inside one ``size`` x ``size`` square per image whose
    centre is uniform over the image, clipped at the border."""
    cy = integers(n, 0, h - 1, like, generator)
    cx = integers(n, 0, w - 1, like, generator)
    y0, x0 = cy - size // 2, cx - size // 2
    rows = torch.arange(h, device=like.device)[None, :]
    cols = torch.arange(w, device=like.device)[None, :]
    in_y = (rows >= y0[:, None]) & (rows < (y0 + size)[:, None])
    in_x = (cols >= x0[:, None]) & (cols < (x0 + size)[:, None])
    return (in_y[:, :, None] & in_x[:, None, :])[:, None]


def cutout(x: Tensor, size: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Zero one ``size`` x ``size`` square per image (DeVries and Taylor 2017). The square's
    centre is uniform over the image and it is clipped at the border, so squares near an edge
    cover less, as in the paper.

    Example:
        >>> import torch
        >>> out = cutout(torch.ones(8, 3, 32, 32), 8)
        >>> bool(((out == 0).sum(dim=(1, 2, 3)) <= 3 * 64).all())
        True

    Reference: DeVries and Taylor, "Improved Regularization of Convolutional Neural Networks
    with Cutout", 2017.
    """
    check_images(x)
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an integer >= 1, got {size!r}")
    n, _, h, w = x.shape
    mask = cutout_mask(n, h, w, size, x, generator)
    return x.masked_fill(mask, 0)
