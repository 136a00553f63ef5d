"""Real data for GANs: the standard 2-D Gaussian mixtures, and images as batches in [-1, 1]."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from trickbag._validate import check_positive, check_positive_int

__all__ = ["Mixture", "ring", "grid", "ImageSampler"]


@dataclass(frozen=True)
class Mixture:
    """An equal-weight mixture of isotropic 2-D Gaussians: ``centers`` ``(K, 2)`` and one ``std``.

    Example:
        >>> m = ring(8, radius=2.0, std=0.02)
        >>> m.sample(5, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([5, 2])
    """

    centers: Tensor
    std: float

    @property
    def modes(self) -> int:
        return self.centers.shape[0]

    def sample(self, n: int, *, generator: torch.Generator | None = None, device: str | torch.device = "cpu") -> Tensor:
        """``n`` samples: a mode uniformly at random, plus Gaussian noise of ``std``."""
        idx = torch.randint(0, self.modes, (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator) * self.std
        return (self.centers[idx] + noise).to(device)


def ring(modes: int = 8, *, radius: float = 2.0, std: float = 0.02) -> Mixture:
    """``modes`` Gaussians evenly spaced on a circle (Metz et al. 2017: 8 modes, radius 2,
    std 0.02).

    Example:
        >>> ring(4, radius=1.0).centers.round(decimals=4).tolist()
        [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [-0.0, -1.0]]
    """
    check_positive_int("modes", modes)
    check_positive("radius", radius)
    check_positive("std", std)
    angles = torch.arange(modes, dtype=torch.float64) * 2 * math.pi / modes
    return Mixture(torch.stack([angles.cos(), angles.sin()], 1).float() * radius, std)


def grid(side: int = 5, *, spacing: float = 2.0, std: float = 0.05) -> Mixture:
    """``side x side`` Gaussians on a square grid centred at the origin (Dumoulin et al. 2017,
    Lin et al. 2018: 5x5, spacing 2, std 0.05).

    Example:
        >>> grid(2, spacing=2.0).centers.tolist()
        [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]]
    """
    check_positive_int("side", side)
    check_positive("spacing", spacing)
    check_positive("std", std)
    coords = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    xs, ys = torch.meshgrid(coords, coords, indexing="ij")
    return Mixture(torch.stack([xs.flatten(), ys.flatten()], 1), std)


class ImageSampler:
    """Random batches of images (``uint8`` ``(N, C, H, W)``) scaled to ``[-1, 1]``, the range of a
    ``tanh`` generator.

    Example:
        >>> images = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
        >>> batch = ImageSampler(images).sample(3, generator=torch.Generator().manual_seed(0))
        >>> batch.shape, bool(batch.min() >= -1 and batch.max() <= 1)
        (torch.Size([3, 1, 4, 4]), True)
    """

    def __init__(self, images: Tensor):
        if images.dim() != 4:
            raise ValueError(f"ImageSampler needs (N, C, H, W) images, got shape {tuple(images.shape)}")
        self.images = images

    def sample(self, n: int, *, generator: torch.Generator | None = None, device: str | torch.device = "cpu") -> Tensor:
        idx = torch.randint(0, self.images.shape[0], (n,), generator=generator)
        return to_signed(self.images[idx]).to(device)


def to_signed(images: Tensor) -> Tensor:
    """``uint8`` images to floats in ``[-1, 1]``."""
    return images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()
