"""Soft thresholding with learned channel-wise thresholds (Deep Residual Shrinkage Networks)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trickbag._validate import check_positive_int

__all__ = ["soft_threshold", "SoftThreshold", "ShrinkageResidualBlock"]


def soft_threshold(x: Tensor, tau: Tensor | float) -> Tensor:
    r"""Soft thresholding :math:`y = \mathrm{sign}(x)\max(|x| - \tau, 0)`; ``tau >= 0``
    broadcast against ``x``. Values within ``tau`` of zero become zero; others shrink by ``tau``.

    Example:
        >>> import torch
        >>> soft_threshold(torch.tensor([-2.0, -0.5, 0.3, 1.5]), 1.0).tolist()
        [-1.0, -0.0, 0.0, 0.5]
    """
    if isinstance(tau, (int, float)) and tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau!r}")
    return torch.sign(x) * torch.relu(x.abs() - tau)


class SoftThreshold(nn.Module):
    r"""Soft thresholding whose per-channel thresholds are learned from the input itself.

    A small sub-network looks at the global average of :math:`|x|` per channel, runs
    FC-BN-ReLU-FC-sigmoid to get :math:`\alpha_c \in (0, 1)`, and sets
    :math:`\tau_c = \alpha_c \cdot \mathrm{mean}|x_c|`, so the threshold is positive and never
    removes more than the channel's average magnitude (DRSN-CW). Works on ``(N, C, ...)``; a
    training batch of one (a last, odd batch) uses the BatchNorm's running statistics.

    Example:
        >>> import torch
        >>> layer = SoftThreshold(8).eval()
        >>> x = torch.randn(4, 8, 5, 5)
        >>> bool((layer(x).abs() <= x.abs()).all())
        True

    Reference: Zhao, Zhong, Fu, Tang, Pecht, "Deep Residual Shrinkage Networks for Fault
    Diagnosis", IEEE Trans. Industrial Informatics 2020 (arXiv 2019).
    """

    def __init__(self, channels: int):
        super().__init__()
        check_positive_int("channels", channels)
        self.channels = channels
        self.net = nn.Sequential(
            nn.Linear(channels, channels),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.Linear(channels, channels),
            nn.Sigmoid(),
        )

    def thresholds(self, x: Tensor) -> Tensor:
        """The per-example, per-channel thresholds ``tau`` with shape ``(N, C)``."""
        if x.dim() < 2 or x.shape[1] != self.channels:
            raise ValueError(f"SoftThreshold({self.channels}) expects (N, {self.channels}, ...), got {tuple(x.shape)}")
        abs_mean = x.abs().flatten(2).mean(dim=2) if x.dim() > 2 else x.abs()
        if self.training and abs_mean.shape[0] == 1:
            return self._net_single(abs_mean) * abs_mean
        return self.net(abs_mean) * abs_mean

    def _net_single(self, a: Tensor) -> Tensor:
        """The sub-network on a batch of one in training, where BatchNorm cannot take batch
        statistics: it normalises with its running statistics (and leaves them unchanged)."""
        fc1, bn, relu, fc2, gate = self.net
        h = fc1(a)
        if bn.running_mean is not None:
            h = torch.nn.functional.batch_norm(h, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                                               training=False, eps=bn.eps)
        return gate(fc2(relu(h)))

    def forward(self, x: Tensor) -> Tensor:
        tau = self.thresholds(x)
        return soft_threshold(x, tau.reshape(*tau.shape, *([1] * (x.dim() - 2))))

    def extra_repr(self) -> str:
        return str(self.channels)


class ShrinkageResidualBlock(nn.Module):
    """The residual shrinkage building unit (RSBU-CW): BN-ReLU-conv-BN-ReLU-conv, soft
    thresholding with learned thresholds, plus the shortcut (identity, or a 1x1 projection when
    the shape changes). Useful when the input is noisy: the thresholds zero small, noise-like
    features inside the residual branch.

    Example:
        >>> import torch
        >>> ShrinkageResidualBlock(16, 32, stride=2)(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 32, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        check_positive_int("stride", stride)
        self.branch = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(),
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        )
        self.shrink = SoftThreshold(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.shrink(self.branch(x)) + self.shortcut(x)
