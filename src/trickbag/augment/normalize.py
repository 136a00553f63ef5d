"""Per-channel normalisation fitted on the training set, and its inverse."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Normalizer", "fit_normalizer"]


class Normalizer(nn.Module):
    """``(x / scale - mean) / std`` per channel, as float32; :meth:`inverse` undoes it.

    ``scale`` is 255 for images fitted as uint8, so the module turns raw uint8 batches into
    zero-centred, unit-variance floats in one step.

    Example:
        >>> import torch
        >>> norm = Normalizer(torch.tensor([0.5]), torch.tensor([0.25]))
        >>> norm(torch.tensor([[[[1.0]]]]))
        tensor([[[[2.]]]])
        >>> norm.inverse(norm(torch.tensor([[[[0.3]]]])))
        tensor([[[[0.3000]]]])
    """

    def __init__(self, mean: Tensor, std: Tensor, scale: float = 1.0):
        super().__init__()
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if mean.dim() != 1 or mean.shape != std.shape:
            raise ValueError(f"mean and std must be 1-D of equal length, got {tuple(mean.shape)} and {tuple(std.shape)}")
        if (std <= 0).any():
            raise ValueError(f"std must be > 0 in every channel, got {std.tolist()}")
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1))
        self.register_buffer("std", std.reshape(1, -1, 1, 1))
        self.scale = float(scale)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"Normalizer for {self.mean.shape[1]} channels got shape {tuple(x.shape)}")
        x = x.float()
        if self.scale != 1.0:
            x = x / self.scale
        return (x - self.mean) / self.std

    def inverse(self, z: Tensor) -> Tensor:
        return (z * self.std + self.mean) * self.scale

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}, scale={self.scale}"


@torch.no_grad()
def fit_normalizer(images: Tensor, *, chunk: int = 4096) -> Normalizer:
    """Fit per-channel mean and standard deviation on a training set ``(N, C, H, W)``.

    Accumulated in float64 over chunks (no full float copy of a uint8 data set). uint8 images
    are measured on the ``[0, 1]`` scale and the normaliser divides by 255 first.

    Example:
        >>> import torch
        >>> x = torch.randint(0, 256, (100, 3, 8, 8), dtype=torch.uint8)
        >>> z = fit_normalizer(x)(x)
        >>> bool(z.mean(dim=(0, 2, 3)).abs().max() < 1e-5), bool((z.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-2)
        (True, True)
    """
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"fit_normalizer needs a non-empty (N, C, H, W) tensor, got {tuple(images.shape)}")
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64, device=images.device)
    total_sq = torch.zeros_like(total)
    for start in range(0, images.shape[0], chunk):
        part = images[start:start + chunk].double() / scale
        total += part.sum(dim=(0, 2, 3))
        total_sq += (part * part).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    if (std == 0).any():
        raise ValueError(f"a channel is constant over the whole data set (std {std.tolist()}): cannot normalise")
    return Normalizer(mean.float().cpu(), std.float().cpu(), scale).to(images.device)
