"""Random draws for the augmentations (private).

Draws happen on the generator's device when one is given (then move to the data's device),
so one CPU generator seed reproduces a batch exactly on any device; without a generator they
use the data device's default RNG, which needs no host synchronisation.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _where(like: Tensor, generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else like.device


def uniform(n: int, low: float, high: float, like: Tensor, generator: torch.Generator | None) -> Tensor:
    u = torch.rand(n, device=_where(like, generator), generator=generator)
    return (u * (high - low) + low).to(like.device)


def integers(n: int, low: int, high: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform integers in [low, high] inclusive."""
    return torch.randint(low, high + 1, (n,), device=_where(like, generator), generator=generator).to(like.device)


def normal(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(shape, device=_where(like, generator), generator=generator, dtype=like.dtype).to(like.device)


def permutation(n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randperm(n, device=_where(like, generator), generator=generator).to(like.device)


def beta(alpha: float, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """One Beta(alpha, alpha) draw as a 0-d float32 tensor on ``like``'s device."""
    g = torch._standard_gamma(torch.full((2,), float(alpha), device=_where(like, generator)), generator=generator)
    return (g[0] / (g[0] + g[1])).to(like.device)


def check_images(x: Tensor, name: str = "x") -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} must be a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
