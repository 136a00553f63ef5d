"""Anti-aliased downsampling (Zhang 2019): blur with a binomial filter, then subsample."""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trickbag._validate import check_choice, check_positive_int

__all__ = ["binomial_filter", "blur_pool2d", "BlurPool2d", "apply_blurpool"]

log = logging.getLogger("trickbag")

_ROWS = {
    1: [1.0],
    2: [1.0, 1.0],
    3: [1.0, 2.0, 1.0],
    4: [1.0, 3.0, 3.0, 1.0],
    5: [1.0, 4.0, 6.0, 4.0, 1.0],
    6: [1.0, 5.0, 10.0, 10.0, 5.0, 1.0],
    7: [1.0, 6.0, 15.0, 20.0, 15.0, 6.0, 1.0],
}
_PAD_MODES = ("reflect", "replicate", "zeros")


def binomial_filter(size: int) -> Tensor:
    """The normalised 2-D binomial filter of side ``size`` (1 to 7): outer product of a
    Pascal-triangle row with itself, summing to one.

    Example:
        >>> binomial_filter(3) * 16
        tensor([[1., 2., 1.],
                [2., 4., 2.],
                [1., 2., 1.]])
    """
    if size not in _ROWS:
        raise ValueError(f"filt_size must be an integer from 1 to 7, got {size!r}")
    row = torch.tensor(_ROWS[size])
    kernel = row[:, None] * row[None, :]
    return kernel / kernel.sum()


def _pads(size: int) -> tuple[int, int, int, int]:
    lo, hi = (size - 1) // 2, size // 2  # ceil((size - 1) / 2) == size // 2
    return (lo, hi, lo, hi)


def blur_pool2d(x: Tensor, *, filt_size: int = 3, stride: int = 2, pad_mode: str = "reflect") -> Tensor:
    """Blur every channel with the binomial filter, then subsample by ``stride``.

    Padding keeps the blurred map the input's size, so the output is ``ceil(H / stride)``.

    Example:
        >>> import torch
        >>> blur_pool2d(torch.ones(1, 2, 8, 8)).shape
        torch.Size([1, 2, 4, 4])
    """
    check_positive_int("stride", stride)
    check_choice("pad_mode", pad_mode, _PAD_MODES)
    if x.dim() != 4:
        raise ValueError(f"blur_pool2d expects (N, C, H, W), got shape {tuple(x.shape)}")
    kernel = binomial_filter(filt_size)
    if filt_size == 1:
        return x[:, :, ::stride, ::stride]
    channels = x.shape[1]
    mode = "constant" if pad_mode == "zeros" else pad_mode
    padded = F.pad(x, _pads(filt_size), mode=mode)
    weight = kernel.to(device=x.device, dtype=x.dtype).expand(channels, 1, filt_size, filt_size)
    return F.conv2d(padded, weight, stride=stride, groups=channels)


class BlurPool2d(nn.Module):
    """Anti-aliased downsampling layer: a depthwise binomial blur, then a strided subsample.

    Args:
        channels: expected input channels (checked), or ``None`` to accept any: the filter is
            shared by every channel, as in the paper, so it needs no per-channel copy.
        filt_size: binomial filter side, 1 to 7 (1 is plain subsampling). Default 3.
        stride: subsampling factor. Default 2.
        pad_mode: ``"reflect"`` (default), ``"replicate"`` or ``"zeros"``.

    Example:
        >>> import torch
        >>> BlurPool2d(16)(torch.randn(2, 16, 32, 32)).shape
        torch.Size([2, 16, 16, 16])

    Reference: Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019.
    """

    def __init__(self, channels: int | None = None, *, filt_size: int = 3, stride: int = 2, pad_mode: str = "reflect"):
        super().__init__()
        if channels is not None:
            check_positive_int("channels", channels)
        check_positive_int("stride", stride)
        check_choice("pad_mode", pad_mode, _PAD_MODES)
        self.register_buffer("filt", binomial_filter(filt_size), persistent=False)
        self.channels, self.filt_size, self.stride, self.pad_mode = channels, filt_size, stride, pad_mode

    def forward(self, x: Tensor) -> Tensor:
        if self.channels is not None and x.dim() == 4 and x.shape[1] != self.channels:
            raise ValueError(f"BlurPool2d({self.channels}) got {x.shape[1]} channels (shape {tuple(x.shape)})")
        return blur_pool2d(x, filt_size=self.filt_size, stride=self.stride, pad_mode=self.pad_mode)

    def extra_repr(self) -> str:
        return f"{self.channels}, filt_size={self.filt_size}, stride={self.stride}, pad_mode={self.pad_mode!r}"


def _stride(value) -> int:
    s = value if isinstance(value, int) else value[0]
    if not isinstance(value, int) and len(set(value)) != 1:
        return 1  # anisotropic strides are left alone
    return s


def apply_blurpool(model: nn.Module, *, filt_size: int = 3) -> nn.Module:
    """Anti-alias every downsampling layer of ``model`` in place (the paper's surgery).

    - a strided ``Conv2d`` becomes the same convolution with stride 1, then ``BlurPool2d``;
    - ``MaxPool2d(k, s)`` becomes ``MaxPool2d(k, 1)``, then ``BlurPool2d(stride=s)``;
    - ``AvgPool2d(k, s)`` becomes ``BlurPool2d(stride=s)``.

    Output shapes are unchanged for even feature maps (and always for padded 3x3 strided
    convolutions). What was replaced is logged on the ``trickbag`` logger and returned in
    ``model.blurpool_replaced``; a model with nothing to replace gets a warning.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.MaxPool2d(2))
        >>> net = apply_blurpool(net)
        >>> net.blurpool_replaced
        ['0 (Conv2d stride 2)', '1 (MaxPool2d stride 2)']
        >>> net(torch.randn(1, 3, 32, 32)).shape
        torch.Size([1, 8, 8, 8])

    Reference: Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019.
    """
    binomial_filter(filt_size)  # validates
    plan: list[tuple[nn.Module, str, str, nn.Module]] = []
    for parent_name, parent in model.named_modules():
        if isinstance(parent, BlurPool2d):
            continue
        for name, child in parent.named_children():
            full = f"{parent_name}.{name}" if parent_name else name
            if isinstance(child, nn.Conv2d) and _stride(child.stride) > 1:
                s = _stride(child.stride)
                conv = copy.deepcopy(child)
                conv.stride = (1, 1)
                new = nn.Sequential(conv, BlurPool2d(child.out_channels, filt_size=filt_size, stride=s))
                plan.append((parent, name, f"{full} (Conv2d stride {s})", new))
            elif isinstance(child, nn.MaxPool2d) and _stride(child.stride) > 1:
                s = _stride(child.stride)
                pool = nn.MaxPool2d(child.kernel_size, stride=1, padding=child.padding,
                                    dilation=child.dilation, ceil_mode=child.ceil_mode)
                plan.append((parent, name, f"{full} (MaxPool2d stride {s})",
                             nn.Sequential(pool, BlurPool2d(filt_size=filt_size, stride=s))))
            elif isinstance(child, nn.AvgPool2d) and _stride(child.stride) > 1:
                s = _stride(child.stride)
                plan.append((parent, name, f"{full} (AvgPool2d stride {s})", BlurPool2d(filt_size=filt_size, stride=s)))
    for parent, name, _, new in plan:
        setattr(parent, name, new.to(next(iter(model.parameters()), torch.empty(0)).device))
    replaced = [desc for _, _, desc, _ in plan]
    model.blurpool_replaced = replaced  # type: ignore[attr-defined]
    if replaced:
        log.info("apply_blurpool replaced %d layers: %s", len(replaced), ", ".join(replaced))
    else:
        import warnings

        warnings.warn("apply_blurpool found no strided convolution or pooling layer to replace", stacklevel=2)
    return model
