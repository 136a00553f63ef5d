"""Residual blocks: skip connections F(x) + x, optionally starting as the identity."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trickbag._validate import check_positive_int
from trickbag.layers.activations import make_activation
from trickbag.layers.norms import make_norm

__all__ = ["ResidualBlock"]


class ResidualBlock(nn.Module):
    """The basic residual block: ``act(norm(conv(act(norm(conv(x))))) + shortcut(x))``.

    The shortcut is the identity when shapes match, otherwise a 1x1 strided convolution and a
    norm (projection). With ``zero_init_last=True`` the last norm's scale starts at zero, so the
    residual branch outputs zero and the block starts as ``act(x)``: the identity on the
    non-negative inputs a ReLU network feeds it (Goyal et al. 2017), and a deep stack of such
    blocks starts as a shallow network.

    Args:
        in_channels, out_channels: channel counts.
        stride: of the first convolution and the projection. Default 1.
        norm: a :func:`~trickbag.layers.make_norm` kind. Default ``"batch"``.
        activation: a :func:`~trickbag.layers.make_activation` name. Default ``"relu"``.
        zero_init_last: zero the last norm's weight (or the last conv without a norm).

    Example:
        >>> import torch
        >>> block = ResidualBlock(8, 8, zero_init_last=True).eval()
        >>> x = torch.rand(2, 8, 6, 6)
        >>> bool(torch.equal(block(x), x))
        True

    Reference: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        norm: str = "batch",
        activation: str = "relu",
        zero_init_last: bool = False,
    ):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        check_positive_int("stride", stride)
        bias = norm == "none"
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)
        self.norm1 = make_norm(norm, out_channels)
        self.act1 = make_activation(activation, channels=out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias)
        self.norm2 = make_norm(norm, out_channels)
        self.act2 = make_activation(activation, channels=out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias), make_norm(norm, out_channels)
            )
        if zero_init_last:
            self.zero_init_last_()

    @property
    def last_norm(self) -> nn.Module:
        return self.norm2

    @torch.no_grad()
    def zero_init_last_(self) -> None:
        """Zero the residual branch's last scale, so the block starts as ``act(x)``."""
        weight = getattr(self.norm2, "weight", None)
        if weight is not None:
            weight.zero_()
        else:
            self.conv2.weight.zero_()
            if self.conv2.bias is not None:
                self.conv2.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act2(out + self.shortcut(x))
