"""Long-tailed versions of balanced data sets (Cui et al. 2019; Cao et al. 2019)."""

from __future__ import annotations

import torch

from trickbag._validate import check_choice, check_positive_int, check_real
from trickbag.data.core import ArrayDataset

__all__ = ["long_tail_counts", "long_tailed", "PROFILES"]

PROFILES = ("exponential", "step")


def long_tail_counts(max_count: int, num_classes: int, imbalance_ratio: float = 100.0,
                     profile: str = "exponential") -> list[int]:
    r"""Examples to keep per class, from ``max_count`` for class 0 down to
    ``max_count / imbalance_ratio`` for the last class.

    ``"exponential"`` (Cui et al. 2019): :math:`n_c = \lfloor n_{\max}\,\rho^{-c/(C-1)} \rfloor`;
    ``"step"`` (Cao et al. 2019): the first half of the classes keep ``max_count``, the rest
    ``max_count / rho``.

    Example:
        >>> long_tail_counts(5000, 10, 100)
        [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
        >>> long_tail_counts(5000, 4, 10, "step")
        [5000, 5000, 500, 500]
    """
    check_positive_int("max_count", max_count)
    check_positive_int("num_classes", num_classes)
    check_real("imbalance_ratio", imbalance_ratio)
    if imbalance_ratio < 1:
        raise ValueError(f"imbalance_ratio must be >= 1 (largest over smallest class), got {imbalance_ratio!r}")
    check_choice("profile", profile, PROFILES)
    if profile == "step":
        return [max_count if c < num_classes // 2 else max(1, int(max_count / imbalance_ratio)) for c in range(num_classes)]
    span = max(num_classes - 1, 1)
    return [max(1, int(max_count * imbalance_ratio ** (-c / span))) for c in range(num_classes)]


def long_tailed(data: ArrayDataset, imbalance_ratio: float = 100.0, *, profile: str = "exponential",
                seed: int = 0) -> ArrayDataset:
    """A long-tailed subset of a (roughly) balanced data set: class ``c`` keeps a fixed random
    ``long_tail_counts(n_max, C, imbalance_ratio, profile)[c]`` of its examples, where ``n_max``
    is the smallest class's size, so class 0 is the head and the last class the tail. Keep the
    test set balanced: accuracy on it is then the mean per-class accuracy.

    Example:
        >>> data = ArrayDataset(torch.zeros(400, 2), torch.arange(400) % 4)
        >>> torch.bincount(long_tailed(data, 10).targets).tolist()
        [100, 46, 21, 10]

    Reference: Cui, Jia, Lin, Song, Belongie, "Class-Balanced Loss Based on Effective Number of
    Samples", CVPR 2019 (long-tailed CIFAR-10 at imbalance 10 to 200).
    """
    targets = data.targets
    if targets.dim() != 1 or targets.is_floating_point():
        raise ValueError(f"long_tailed needs (N,) class-index targets, got shape {tuple(targets.shape)}")
    num_classes = len(data.classes) or int(targets.max()) + 1
    sizes = torch.bincount(targets, minlength=num_classes)
    if (sizes == 0).any():
        raise ValueError(f"long_tailed needs examples of every class; classes {torch.nonzero(sizes == 0).flatten().tolist()} have none")
    keep_counts = long_tail_counts(int(sizes.min()), num_classes, imbalance_ratio, profile)
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for c, k in enumerate(keep_counts):
        idx = torch.nonzero(targets == c).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    return data.take(torch.cat(keep).sort().values)
