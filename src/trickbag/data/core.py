"""In-memory data sets and splits shared by every loader."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["ArrayDataset", "Splits", "split_off", "cache_dir", "subset"]


def cache_dir() -> Path:
    """Where decoded data sets are cached: ``$TRICKBAG_CACHE`` or ``~/.cache/trickbag``."""
    path = Path(os.environ.get("TRICKBAG_CACHE", Path.home() / ".cache" / "trickbag"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class ArrayDataset(torch.utils.data.Dataset):
    """A whole data set as two tensors.

    Attributes:
        inputs: ``(N, C, H, W)`` uint8 images, ``(N, L)`` int64 token ids, or ``(N, ...)`` floats.
        targets: ``(N,)`` int64 class indices (or ``(N, C)`` floats for multi-label).
        classes: class names.
    """

    inputs: Tensor
    targets: Tensor
    classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.inputs.shape[0] != self.targets.shape[0]:
            raise ValueError(
                f"inputs and targets disagree on the number of examples: {self.inputs.shape[0]} vs "
                f"{self.targets.shape[0]}"
            )

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.inputs[index], self.targets[index]

    @property
    def kind(self) -> str:
        if self.inputs.dim() == 4:
            return "image"
        if self.inputs.dim() == 2 and not self.inputs.is_floating_point():
            return "text"
        return "vector"

    def take(self, index: Tensor) -> ArrayDataset:
        return ArrayDataset(self.inputs[index], self.targets[index], list(self.classes))


@dataclass
class Splits:
    """Train, validation and test sets of one data set, plus what models need to know."""

    train: ArrayDataset
    val: ArrayDataset | None
    test: ArrayDataset | None
    name: str = ""
    vocab: dict[str, int] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        if self.train.classes:
            return len(self.train.classes)
        t = self.train.targets
        return int(t.shape[1]) if t.dim() == 2 else int(t.max().item()) + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.inputs.shape[1:])


def split_off(data: ArrayDataset, fraction: float, *, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """Split a validation set off a training set with a fixed seed (stratified by class when
    targets are class indices, so every class keeps its share).

    Example:
        >>> import torch
        >>> data = ArrayDataset(torch.arange(100.0)[:, None], torch.arange(100) % 4)
        >>> train, val = split_off(data, 0.2)
        >>> len(train), len(val), torch.bincount(val.targets).tolist()
        (80, 20, [5, 5, 5, 5])
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction!r}")
    gen = torch.Generator().manual_seed(seed)
    targets = data.targets
    if targets.dim() == 1 and not targets.is_floating_point():
        val_idx = []
        for c in torch.unique(targets):
            idx = torch.nonzero(targets == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=gen)]
            val_idx.append(idx[: max(1, round(fraction * len(idx)))])
        val_index = torch.cat(val_idx).sort().values
    else:
        perm = torch.randperm(len(data), generator=gen)
        val_index = perm[: max(1, round(fraction * len(data)))].sort().values
    mask = torch.ones(len(data), dtype=torch.bool)
    mask[val_index] = False
    return data.take(torch.nonzero(mask).flatten()), data.take(val_index)


def subset(data: ArrayDataset, n: int, *, seed: int = 0) -> ArrayDataset:
    """A fixed random subset of ``n`` examples (for quick runs)."""
    if n >= len(data):
        return data
    gen = torch.Generator().manual_seed(seed)
    return data.take(torch.randperm(len(data), generator=gen)[:n].sort().values)
