"""Run an attack without leaving a trace on the model (private)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every module in eval mode (no BatchNorm statistics updates, no dropout), then
    restore each module's own flag: mixed train/eval models come back exactly as they were."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
