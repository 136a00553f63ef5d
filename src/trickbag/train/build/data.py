"""The data of a run: data sets by name, ``load_splits`` (validation split, long tail, label
noise, subsets, exclusions applied in that order) and the training images' normaliser."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trickbag._validate import unknown
from trickbag.train._imports import as_splits, call_with, import_object, is_import_path
from trickbag.train.build._kwargs import _check_kwargs
from trickbag.train.config import RunConfig

__all__ = ["DATASETS", "load_splits"]


def _find(path: str | None, cfg: RunConfig, what: str) -> str:
    if not path:
        raise ValueError(f"data.path is required for {what}")
    p = Path(path)
    if not p.exists() and cfg.source and not p.is_absolute():
        alt = Path(cfg.source).parent / p
        if alt.exists():
            return str(alt)
    return str(p)


def _load_fashion_mnist(cfg: RunConfig):
    from trickbag.data import fashion_mnist

    return fashion_mnist(cfg.data.root, **cfg.data.options)


def _load_cifar10(cfg: RunConfig):
    from trickbag.data import cifar10

    return cifar10(cfg.data.root, **cfg.data.options)


def _load_image_folder(cfg: RunConfig):
    from trickbag.data import image_folder

    return image_folder(_find(cfg.data.path, cfg, "image_folder"), **cfg.data.options)


def _load_mr(cfg: RunConfig):
    from trickbag.data import mr_polarity

    return mr_polarity(_find(cfg.data.path, cfg, "mr_polarity"), **cfg.data.options)


def _load_synthetic(cfg: RunConfig):
    from trickbag.data import synthetic

    opts = dict(cfg.data.options)
    if "shape" in opts:
        opts["shape"] = tuple(opts["shape"])
    return synthetic(**opts)


DATASETS: dict[str, Callable[[RunConfig], Any]] = {
    "fashion_mnist": _load_fashion_mnist,
    "cifar10": _load_cifar10,
    "image_folder": _load_image_folder,
    "mr_polarity": _load_mr,
    "synthetic": _load_synthetic,
}


def load_splits(cfg: RunConfig):
    """The data set's splits, with a validation split made from the training data if needed."""
    from trickbag.data import split_off, subset, with_label_noise

    if is_import_path(cfg.data.name):  # your own: package.module:callable(**options)
        fn = import_object(cfg.data.name, "data")
        splits = as_splits(call_with(fn, {"root": cfg.data.root, "path": cfg.data.path}, cfg.data.options,
                                     f"data {cfg.data.name}"), f"data {cfg.data.name}", keys=tuple(cfg.data.batch_keys))
    elif cfg.data.name not in DATASETS:
        raise unknown("data set", cfg.data.name, [*DATASETS, "package.module:callable"])
    else:
        splits = DATASETS[cfg.data.name](cfg)
    if splits.val is None and cfg.data.val_fraction > 0:
        splits.train, splits.val = split_off(splits.train, cfg.data.val_fraction, seed=cfg.data.split_seed)
    if cfg.data.long_tail is not None:  # after the validation split, which stays balanced like the test split
        from trickbag.data import long_tailed

        if not isinstance(cfg.data.long_tail, dict):
            raise ValueError(f"data.long_tail must be a mapping such as {{imbalance_ratio: 100}}, got {cfg.data.long_tail!r}")
        _check_kwargs(long_tailed, cfg.data.long_tail, "data.long_tail", skip=("data",))
        splits.train = long_tailed(splits.train, **{"seed": cfg.data.split_seed, **cfg.data.long_tail})
    if cfg.data.label_noise is not None:  # the training labels only: validation and test stay clean
        noise = cfg.data.label_noise
        if isinstance(noise, (int, float)) and not isinstance(noise, bool):  # a rate, seeded by split_seed
            noise = {"rate": float(noise), "seed": cfg.data.split_seed}
        if not isinstance(noise, dict) or "rate" not in noise:
            raise ValueError(f"data.label_noise must be a rate such as 0.2 or a mapping such as {{rate: 0.2, seed: 0}}, "
                             f"got {cfg.data.label_noise!r}")
        _check_kwargs(with_label_noise, noise, "data.label_noise", skip=("data",))
        splits.train = with_label_noise(splits.train, **noise)
    if cfg.data.subset:
        splits.train = subset(splits.train, cfg.data.subset, seed=cfg.data.split_seed)
    if cfg.data.eval_subset:  # quick runs: a fixed sample of the evaluation splits (never for results)
        for part in ("val", "test"):
            if getattr(splits, part) is not None:
                setattr(splits, part, subset(getattr(splits, part), cfg.data.eval_subset, seed=cfg.data.split_seed))
    if cfg.data.exclude:
        from trickbag.data import exclude, read_exclusions

        path = _find(cfg.data.exclude, cfg, "data.exclude")
        splits.train = exclude(splits.train, read_exclusions(path, len(splits.train)))
    return splits


# One entry: (the images tensor itself, its normaliser). Holding the tensor keeps its id and
# storage from being reused by another data draw of the same shape while the entry lives.
_NORMALIZERS: list[tuple[torch.Tensor, Any]] = []


def _normalizer(images: torch.Tensor):
    """The training images' per-channel normaliser, computed once per tensor in a process (the
    trials of an ablation or search share their data, so they share this too)."""
    from trickbag.augment import fit_normalizer

    if not (_NORMALIZERS and _NORMALIZERS[0][0] is images):
        _NORMALIZERS[:] = [(images, fit_normalizer(images))]
    return _NORMALIZERS[0][1]
