"""Reference models: an FC-BN-ReLU MLP, a small CNN and CIFAR ResNets."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from trickbag._validate import check_positive_int, check_range
from trickbag.layers import ResidualBlock, ShrinkageResidualBlock, apply_blurpool, make_activation, make_norm

__all__ = ["mlp", "small_cnn", "resnet_cifar", "ResNet"]


def mlp(
    in_features: int,
    num_classes: int,
    *,
    hidden: Sequence[int] = (256, 256),
    norm: str = "batch",
    activation: str = "relu",
    dropout: float = 0.0,
) -> nn.Sequential:
    """The FC-BN-ReLU pattern: ``[Linear -> norm -> activation -> dropout] * len(hidden) -> Linear``.
    Inputs of any shape are flattened first.

    Example:
        >>> import torch
        >>> mlp(784, 10, hidden=(64,))(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    check_positive_int("in_features", in_features)
    check_positive_int("num_classes", num_classes)
    check_range("dropout", dropout, 0.0, 1.0, high_open=True)
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        check_positive_int("hidden width", h)
        layers += [nn.Linear(width, h, bias=norm == "none"), make_norm(norm, h, dim=1), make_activation(activation, channels=h)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _conv_block(cin: int, cout: int, norm: str, activation: str) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=norm == "none"), make_norm(norm, cout), make_activation(activation, channels=cout)]


def small_cnn(
    in_channels: int,
    num_classes: int,
    *,
    width: int = 32,
    norm: str = "batch",
    activation: str = "relu",
    dropout: float = 0.0,
    blurpool: bool = False,
) -> nn.Sequential:
    """A small VGG-style CNN: two stages of two 3x3 conv-norm-activation layers and a 2x2 max
    pool (widths ``width`` and ``2 * width``), global average pooling, dropout and a linear head.
    About 65k parameters at ``width=32``; over 90% on Fashion-MNIST in a few epochs.

    Example:
        >>> import torch
        >>> small_cnn(1, 10)(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    check_positive_int("in_channels", in_channels)
    check_positive_int("width", width)
    check_range("dropout", dropout, 0.0, 1.0, high_open=True)
    w2 = 2 * width
    layers = [
        *_conv_block(in_channels, width, norm, activation),
        *_conv_block(width, width, norm, activation),
        nn.MaxPool2d(2),
        *_conv_block(width, w2, norm, activation),
        *_conv_block(w2, w2, norm, activation),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout) if dropout else nn.Identity(),
        nn.Linear(w2, num_classes),
    ]
    model = nn.Sequential(*layers)
    return apply_blurpool(model) if blurpool else model


class ResNet(nn.Module):
    """A CIFAR ResNet: a 3x3 stem, stages of residual blocks, global average pooling, linear."""

    def __init__(
        self,
        blocks_per_stage: Sequence[int],
        widths: Sequence[int],
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        norm: str = "batch",
        activation: str = "relu",
        block: str = "basic",
        dropout: float = 0.0,
    ):
        super().__init__()
        if block not in ("basic", "shrinkage"):
            raise ValueError(f"unknown block 'block={block}'; valid: basic, shrinkage")
        self.stem = nn.Sequential(*_conv_block(in_channels, widths[0], norm, activation))
        stages, cin = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks_per_stage, widths)):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                if block == "basic":
                    stages.append(ResidualBlock(cin, w, stride, norm=norm, activation=activation))
                else:
                    stages.append(ShrinkageResidualBlock(cin, w, stride))
                cin = w
        self.blocks = nn.Sequential(*stages)
        self.head = nn.Sequential(
            *( [nn.BatchNorm2d(cin), nn.ReLU()] if block == "shrinkage" else []),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout) if dropout else nn.Identity(),
            nn.Linear(cin, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))


def resnet_cifar(
    depth: int,
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    width: int | None = None,
    norm: str = "batch",
    activation: str = "relu",
    block: str = "basic",
    dropout: float = 0.0,
    blurpool: bool = False,
) -> ResNet:
    """ResNets for 32x32 images with skip connections.

    ``depth=18``: ResNet-18 (four stages of two blocks, widths 64-128-256-512, 11.2 M
    parameters). ``depth=6n+2`` (20, 32, 44, 56, 110): He et al.'s CIFAR ResNets (three stages
    of ``n`` blocks, widths 16-32-64). ``width`` scales the first stage (the others double).
    ``block="shrinkage"`` uses residual shrinkage blocks; ``blurpool`` anti-aliases the strided
    convolutions.

    Example:
        >>> import torch
        >>> net = resnet_cifar(20)
        >>> net(torch.randn(2, 3, 32, 32)).shape, sum(p.numel() for p in net.parameters()) // 1000
        (torch.Size([2, 10]), 272)
    """
    if depth == 18:
        stages, base = [2, 2, 2, 2], width or 64
    elif depth >= 8 and (depth - 2) % 6 == 0:
        stages, base = [(depth - 2) // 6] * 3, width or 16
    else:
        raise ValueError(f"depth must be 18 or 6n+2 (8, 14, 20, 32, 44, 56, 110), got {depth!r}")
    widths = [base * 2**i for i in range(len(stages))]
    model = ResNet(stages, widths, in_channels=in_channels, num_classes=num_classes, norm=norm,
                   activation=activation, block=block, dropout=dropout)
    return apply_blurpool(model) if blurpool else model
