"""In-memory data sets and splits shared by every loader."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["ArrayDataset", "Splits", "split_off", "cache_dir", "subset", "symmetric_label_noise", "with_label_noise"]


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


def symmetric_label_noise(targets: Tensor, rate: float, num_classes: int, *, seed: int = 0) -> Tensor:
    """Symmetric label noise: exactly ``round(rate * N)`` labels, chosen at random, each replaced
    by a class drawn uniformly from the ``num_classes - 1`` other classes.

    The noise transition matrix is ``T[i, i] = 1 - rate`` and ``T[i, j] = rate / (C - 1)`` for
    ``j != i`` (the "symmetric" noise of Patrini et al. 2017 and Han et al. 2018), with the flipped
    examples fixed by ``seed`` so that every arm of an ablation sees the same noisy labels.

    Args:
        targets: ``(N,)`` int64 class indices (not changed).
        rate: fraction of labels to flip, in ``[0, 1)``.
        num_classes: ``C >= 2``.
        seed: which labels flip and to what.

    Returns:
        A new ``(N,)`` tensor of labels.

    Example:
        >>> import torch
        >>> y = torch.arange(100) % 10
        >>> noisy = symmetric_label_noise(y, 0.4, 10)
        >>> int((noisy != y).sum()), bool((noisy < 10).all())
        (40, True)

    Reference:
        Patrini, Rozza, Menon, Nock, Qu. Making Deep Neural Networks Robust to Label Noise: a Loss
        Correction Approach. CVPR 2017.
    """
    if not (isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0.0 <= rate < 1.0):
        raise ValueError(f"label noise rate must be a fraction in [0, 1), got {rate!r}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"label noise needs num_classes >= 2, got {num_classes!r}")
    if targets.dim() != 1 or targets.is_floating_point():
        raise ValueError(f"label noise needs (N,) integer class indices, got {tuple(targets.shape)} {targets.dtype}")
    gen = torch.Generator().manual_seed(seed)
    n = targets.shape[0]
    flip = torch.randperm(n, generator=gen)[: round(rate * n)]
    shift = torch.randint(1, num_classes, (flip.numel(),), generator=gen)  # 1..C-1: never the same class
    noisy = targets.clone()
    noisy[flip] = (targets[flip] + shift) % num_classes
    return noisy


def with_label_noise(data: ArrayDataset, rate: float, *, num_classes: int | None = None, seed: int = 0) -> ArrayDataset:
    """``data`` with symmetric label noise on its targets (see ``symmetric_label_noise``); the
    inputs are shared, not copied."""
    if rate == 0:
        return data
    c = num_classes or len(data.classes) or int(data.targets.max().item()) + 1
    return ArrayDataset(data.inputs, symmetric_label_noise(data.targets, rate, c, seed=seed), list(data.classes))
