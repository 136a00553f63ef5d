"""Edits of a training split: injected symmetric label noise (to measure label cleaning) and
a cleaned view that leaves listed examples out (what `trickbag clean` writes)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor

from trickbag._atomic import write_text
from trickbag.data.core import ArrayDataset

__all__ = ["symmetric_label_noise", "with_label_noise", "write_exclusions", "read_exclusions", "exclude"]


def symmetric_label_noise(targets: Tensor, rate: float, num_classes: int | None = None, *,
                          seed: int = 0) -> tuple[Tensor, Tensor]:
    """Flip ``round(rate * N)`` labels, chosen at random, each to a uniformly drawn *other*
    class; returns the noisy labels and the mask of flipped examples (exactly ``rate`` of the
    labels end up wrong). The noise transition matrix is ``T[i, i] = 1 - rate`` and
    ``T[i, j] = rate / (C - 1)`` (the "symmetric" noise of Patrini et al. 2017).

    Example:
        >>> noisy, flipped = symmetric_label_noise(torch.arange(10) % 5, 0.3, seed=0)
        >>> int(flipped.sum()), bool((noisy[flipped] != (torch.arange(10) % 5)[flipped]).all())
        (3, True)
    """
    if not (isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0.0 <= rate < 1.0):
        raise ValueError(f"label noise rate must be a fraction in [0, 1), got {rate!r}")
    if targets.dim() != 1 or targets.is_floating_point():
        raise ValueError(f"label noise needs (N,) integer class indices, got shape {tuple(targets.shape)} {targets.dtype}")
    c = num_classes or int(targets.max()) + 1
    if not isinstance(c, int) or isinstance(c, bool) or c < 2:
        raise ValueError(f"label noise needs num_classes >= 2, got {c!r}")
    # A stream of its own: seeded with `seed` alone it would draw the very permutation that
    # `subset(..., seed=seed)` draws, and a subset of the same seed would hold all the noise.
    gen = torch.Generator().manual_seed((seed + 1) * 2_654_435_761 % 2**61)
    n = targets.shape[0]
    chosen = torch.randperm(n, generator=gen)[: round(rate * n)]
    shift = torch.randint(1, c, (chosen.numel(),), generator=gen)  # never 0: a different class
    noisy = targets.clone()
    noisy[chosen] = (targets[chosen] + shift) % c
    flipped = torch.zeros(n, dtype=torch.bool)
    flipped[chosen] = True
    return noisy, flipped


def with_label_noise(data: ArrayDataset, rate: float, *, seed: int = 0) -> ArrayDataset:
    """``data`` with :func:`symmetric_label_noise` applied to its labels."""
    noisy, _ = symmetric_label_noise(data.targets, rate, len(data.classes) or None, seed=seed)
    return ArrayDataset(data.inputs, noisy, list(data.classes))


def write_exclusions(path: str | Path, indices: Iterable[int], *, size: int, note: str = "") -> Path:
    """Write the positions (in a training split of ``size`` examples) to leave out, one per line
    under a commented header that :func:`read_exclusions` checks."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# trickbag exclusions: positions in a training split of {size} examples",
             f"# size: {size}"] + ([f"# {note}"] if note else []) + [str(int(i)) for i in sorted(set(indices))]
    write_text(path, "\n".join(lines) + "\n")  # atomically
    return path


def read_exclusions(path: str | Path, size: int) -> Tensor:
    """Positions written by :func:`write_exclusions`; fails unless the file was written for a
    training split of ``size`` examples (the same data config)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"exclusion file not found: {path}")
    written, idx = None, []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("# size:"):
            written = int(line.split(":", 1)[1])
        elif line and not line.startswith("#"):
            idx.append(int(line))
    if written is not None and written != size:
        raise ValueError(f"{path} lists positions in a training split of {written} examples, but this data config's "
                         f"has {size}: use the data config the exclusions were made with")
    out = torch.tensor(idx, dtype=torch.long)
    if out.numel() and (out.min() < 0 or out.max() >= size):
        raise ValueError(f"{path}: positions must be in 0..{size - 1}")
    return out


def exclude(data: ArrayDataset, positions: Tensor) -> ArrayDataset:
    """``data`` without the examples at ``positions``.

    Example:
        >>> d = ArrayDataset(torch.arange(5.0)[:, None], torch.arange(5))
        >>> exclude(d, torch.tensor([1, 3])).targets.tolist()
        [0, 2, 4]
    """
    keep = torch.ones(len(data), dtype=torch.bool)
    keep[positions] = False
    return data.take(torch.nonzero(keep).flatten())
