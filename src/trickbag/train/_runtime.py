"""The process plumbing the Trainer needs, kept out of its loop: seeding, choosing the device,
deterministic mode for a block, moving (nested) targets to a device, and spotting optimizer step
pre-hooks. ``seed_everything`` is public through :mod:`trickbag.train`."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from trickbag.train.distributed import world

__all__ = ["seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", world()[1])
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available; use 'cpu' or 'auto'")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


@contextlib.contextmanager
def _deterministic(on: bool):
    """Deterministic algorithms for a block (a no-op when ``on`` is False); settings restored."""
    if not on:
        yield
        return
    import os

    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic workspace
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]


def _to(tree: Any, device: torch.device) -> Any:
    """Move a tensor, or the tensors of a dict, list or tuple (multi-task targets), to ``device``."""
    if isinstance(tree, Tensor):
        return tree.to(device, non_blocking=True)
    if isinstance(tree, Mapping):
        return {k: _to(v, device) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to(v, device) for v in tree)
    return tree


def _has_step_pre_hooks(optimizer: torch.optim.Optimizer) -> bool:
    """Does anything run on the gradients between ``scaler.step`` and the update: step pre-hooks
    on this optimizer, on an optimizer it wraps (Lookahead's inner one), or global ones."""
    from torch.optim.optimizer import _global_optimizer_pre_hooks

    if _global_optimizer_pre_hooks:
        return True
    while optimizer is not None:
        if getattr(optimizer, "_optimizer_step_pre_hooks", None):
            return True
        optimizer = getattr(optimizer, "optimizer", None)
    return False
