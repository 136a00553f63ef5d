"""Generators and critics: fully-connected (for 2-D mixtures and flattened images) and DCGAN-style
convolutional ones for 28x28 images."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from trickbag._validate import check_positive_int

__all__ = ["MLPGenerator", "MLPCritic", "DCGANGenerator", "DCGANCritic"]


class MLPGenerator(nn.Module):
    """``z -> [Linear -> ReLU] * depth -> Linear``, reshaped to ``out_shape`` (``tanh`` on top
    for images: ``out_tanh``).

    Example:
        >>> MLPGenerator(2, (2,), hidden=16)(torch.randn(5, 2)).shape
        torch.Size([5, 2])
    """

    def __init__(self, z_dim: int, out_shape: Sequence[int], *, hidden: int = 128, depth: int = 3,
                 out_tanh: bool = False):
        super().__init__()
        check_positive_int("z_dim", z_dim)
        check_positive_int("hidden", hidden)
        check_positive_int("depth", depth)
        self.z_dim, self.out_shape = z_dim, tuple(out_shape)
        layers: list[nn.Module] = []
        width = z_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, math.prod(self.out_shape)))
        if out_tanh:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).reshape(z.shape[0], *self.out_shape)


class MLPCritic(nn.Module):
    """``x -> flatten -> [Linear -> ReLU] * depth -> Linear(1)``: one score per example (no
    sigmoid; the vanilla GAN's loss takes logits). No normalisation layers, so the gradient
    penalty's per-example gradients are well defined.

    Example:
        >>> MLPCritic((2,), hidden=16)(torch.randn(5, 2)).shape
        torch.Size([5])
    """

    def __init__(self, in_shape: Sequence[int], *, hidden: int = 128, depth: int = 3):
        super().__init__()
        check_positive_int("hidden", hidden)
        check_positive_int("depth", depth)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)


class DCGANGenerator(nn.Module):
    """DCGAN-style generator for 28x28 images (Radford et al. 2016, sized down):
    ``z -> Linear -> (4w, 7, 7) -> BN, ReLU -> ConvT(4w -> 2w, 14x14) -> BN, ReLU ->
    ConvT(2w -> channels, 28x28) -> tanh``.

    Example:
        >>> DCGANGenerator(16, width=8)(torch.randn(3, 16)).shape
        torch.Size([3, 1, 28, 28])
    """

    def __init__(self, z_dim: int = 64, *, channels: int = 1, width: int = 32):
        super().__init__()
        check_positive_int("z_dim", z_dim)
        check_positive_int("width", width)
        self.z_dim = z_dim
        self.fc = nn.Sequential(nn.Linear(z_dim, 4 * width * 49, bias=False), nn.BatchNorm1d(4 * width * 49), nn.ReLU())
        self.width = width
        self.up = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, channels, 4, 2, 1), nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.up(self.fc(z).reshape(z.shape[0], 4 * self.width, 7, 7))


class DCGANCritic(nn.Module):
    """DCGAN-style critic for 28x28 images: ``Conv(4x4, stride 2) -> LeakyReLU(0.2)`` twice
    (``w``, ``2w`` channels, 14x14 then 7x7), then a linear score. No batch normalisation (it
    would couple the examples the gradient penalty treats separately; Gulrajani et al. 2017).

    Example:
        >>> DCGANCritic(width=8)(torch.randn(3, 1, 28, 28)).shape
        torch.Size([3])
    """

    def __init__(self, *, channels: int = 1, width: int = 32):
        super().__init__()
        check_positive_int("width", width)
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * width * 49, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)
