"""The precision losses compute in (private): float32 for half inputs, float64 for float64."""

from __future__ import annotations

import torch
from torch import Tensor


def compute_dtype(x: Tensor) -> torch.dtype:
    """float32 for half and bfloat16 inputs (and integers), else the input's own precision."""
    return torch.promote_types(x.dtype, torch.float32) if x.is_floating_point() else torch.float32


def result_dtype(x: Tensor, computed: Tensor) -> torch.dtype:
    """The input's floating dtype, as ``F.cross_entropy`` returns; under autocast, where
    cross-entropy runs (and returns) in float32, the computed precision."""
    if not x.is_floating_point() or torch.is_autocast_enabled(x.device.type):
        return computed.dtype
    return x.dtype
