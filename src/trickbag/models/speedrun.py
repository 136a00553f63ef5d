"""The record-class CIFAR-10 network: patch-whitening stem, conv-pool-BN-GELU blocks, a scaled head."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from trickbag._validate import check_positive_int
from trickbag.layers import make_activation

__all__ = ["SpeedrunNet", "speedrun_cnn"]


class _Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"{self.factor:.4g}"


class SpeedrunNet(nn.Sequential):
    """``whiten`` (a ``k x k`` convolution with ``2 C k^2`` filters, for the ``patch_whitening``
    trick) -> activation -> one block per width: [conv 3x3 -> max-pool 2 -> BN -> activation,
    then (``convs_per_block - 1``) x (conv 3x3 -> BN -> activation)] -> global max-pool -> a
    bias-free linear head whose logits are multiplied by ``scale``. Convolutions have no bias
    (BatchNorm's shift plays its part)."""


def speedrun_cnn(
    in_channels: int,
    num_classes: int,
    *,
    widths: Sequence[int] = (64, 256, 256),
    convs_per_block: int = 2,
    whiten_kernel: int = 2,
    activation: str = "gelu",
    scale: float = 1 / 9,
) -> SpeedrunNet:
    """The network of the airbench CIFAR-10 records (Jordan 2024), with width and depth as options.

    Compose the recipe's other tricks around it (``configs/cifar10_speedrun.yaml``):
    ``patch_whitening`` initialises ``whiten``, ``identity_init`` the 3x3 convolutions, and
    ``bn_options`` sets the BatchNorms (the defaults here are torch's).

    Args:
        in_channels, num_classes: from the data.
        widths: channels of each block (three blocks: 32 -> 31 -> 15 -> 7 -> 3 pixels).
        convs_per_block: 3x3 convolutions per block (the first one is followed by the pooling).
        whiten_kernel: the whitening stem's kernel size ``k`` (``2 C k^2`` filters, no padding).
        activation: any :func:`~trickbag.layers.make_activation` name.
        scale: multiplies the logits (the records use 1/9).

    Example:
        >>> import torch
        >>> net = speedrun_cnn(3, 10)
        >>> net(torch.randn(2, 3, 32, 32)).shape, sum(p.numel() for p in net.parameters()) // 1000
        (torch.Size([2, 10]), 1972)
    """
    check_positive_int("in_channels", in_channels)
    check_positive_int("num_classes", num_classes)
    check_positive_int("convs_per_block", convs_per_block)
    check_positive_int("whiten_kernel", whiten_kernel)
    if not widths:
        raise ValueError("widths must name at least one block width")
    whiten_width = 2 * in_channels * whiten_kernel**2
    layers: dict[str, nn.Module] = {
        "whiten": nn.Conv2d(in_channels, whiten_width, whiten_kernel, padding=0, bias=True),
        "act0": make_activation(activation),
    }
    cin = whiten_width
    for i, w in enumerate(widths, 1):
        check_positive_int("block width", w)
        block: list[nn.Module] = [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.MaxPool2d(2),
                                  nn.BatchNorm2d(w), make_activation(activation)]
        for _ in range(convs_per_block - 1):
            block += [nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), make_activation(activation)]
        layers[f"block{i}"] = nn.Sequential(*block)
        cin = w
    layers["pool"] = nn.AdaptiveMaxPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["head"] = nn.Linear(cin, num_classes, bias=False)
    layers["scale"] = _Scale(float(scale))
    net = SpeedrunNet()
    for name, module in layers.items():
        net.add_module(name, module)
    return net
