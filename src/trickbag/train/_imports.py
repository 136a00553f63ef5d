"""Your own model, data, loss and metrics in configs: ``package.module:callable`` import paths."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__: list[str] = []  # private: build.py uses these

PEER_LIBRARIES = ("torchvision", "timm")


def is_import_path(name: Any) -> bool:
    """``"mypkg.models:build_net"`` (a module path, a colon, an attribute); not ``"timm:resnet18"``."""
    if not isinstance(name, str) or name.count(":") != 1:
        return False
    module, attr = name.split(":")
    return bool(module) and bool(attr) and module not in PEER_LIBRARIES and all(
        part.isidentifier() for part in module.split(".") + attr.split("."))


def import_object(path: str, what: str, *, libraries: tuple[str, ...] = ()) -> Any:
    """Import ``"package.module:attr"`` (``attr`` may be dotted); errors name the config entry.
    ``libraries``: the ``LIBRARY:NAME`` prefixes the entry also takes (``torchvision``, ``timm``),
    named in the error when an undotted prefix imports nothing (most likely a typo of one)."""
    module_name, _, attr = path.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        hint = "; is its package installed, or its folder on PYTHONPATH?"
        if libraries and "." not in module_name:
            import difflib

            close = difflib.get_close_matches(module_name, libraries, n=1)
            prefixes = ", ".join(f"{lib}:ARCH" for lib in libraries)
            hint = (f"; did you mean {close[0]}:{attr}?" if close else ";") + \
                f" Valid prefixes: {prefixes}, or package.module:callable"
        raise ValueError(f"{what} {path!r}: cannot import module {module_name!r} ({exc}){hint}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise ValueError(f"{what} {path!r}: module {module_name!r} has no {part!r}; it has {names[:12]}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{what} {path!r} is not callable (got {type(obj).__name__})")
    return obj


def call_with(fn: Callable[..., Any], offered: Mapping[str, Any], kwargs: Mapping[str, Any], what: str) -> Any:
    """Call ``fn(**kwargs)`` plus those of ``offered`` (e.g. the data's ``input_shape`` and
    ``num_classes``) that its signature takes; an unknown keyword names the valid ones."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: pass what was given
        return fn(**kwargs)
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    extra = {k: v for k, v in offered.items() if (takes_all or k in params) and k not in kwargs}
    if not takes_all:
        for key in kwargs:
            if key not in params:
                valid = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
                raise ValueError(f"{what}: unknown parameter {key!r}; {fn.__name__} takes {valid}")
    return fn(**extra, **kwargs)


def as_splits(obj: Any, what: str, keys: tuple[str, str] = ("input", "label")):
    """What a data callable may return, as trickbag's :class:`~trickbag.data.Splits`: Splits
    themselves, or a mapping ``{"train": ..., "val": ..., "test": ...}`` (val and test
    optional) or a tuple ``(train, val, test)`` of ArrayDatasets, ``(inputs, targets)`` tensor
    pairs, or map-style torch datasets of ``(input, target)`` items or of dict items (as Hugging
    Face datasets give; ``keys`` names the inputs and targets), read once into tensors."""
    from trickbag.data import ArrayDataset, Splits

    if isinstance(obj, Splits):
        return obj
    if isinstance(obj, Mapping):
        unknown = set(obj) - {"train", "val", "test"}
        if unknown or "train" not in obj:
            raise ValueError(f"{what} returned a mapping with keys {sorted(obj)}; expected 'train' and optionally "
                             "'val' and 'test'")
        parts = [obj.get("train"), obj.get("val"), obj.get("test")]
    elif isinstance(obj, (tuple, list)) and 1 <= len(obj) <= 3:
        parts = list(obj) + [None] * (3 - len(obj))
    else:
        raise ValueError(f"{what} returned {type(obj).__name__}; a data callable returns trickbag Splits, "
                         "{'train': ..., 'val': ..., 'test': ...} or (train, val, test)")

    def dataset(part: Any, split: str):
        if part is None or isinstance(part, ArrayDataset):
            return part
        if isinstance(part, (tuple, list)) and len(part) == 2 and all(isinstance(t, torch.Tensor) for t in part):
            return ArrayDataset(part[0], part[1])
        if isinstance(part, torch.utils.data.Dataset) and hasattr(part, "__len__"):
            items = [part[i] for i in range(len(part))]
            if items and isinstance(items[0], Mapping):
                missing = [k for k in keys if k not in items[0]]
                if missing:
                    raise ValueError(f"{what}: the {split} items have keys {sorted(items[0])}, not {missing}; "
                                     "set data.batch_keys: [inputs_key, targets_key]")
                items = [(item[keys[0]], item[keys[1]]) for item in items]
            xs, ys = zip(*items)
            return ArrayDataset(torch.stack([torch.as_tensor(x) for x in xs]), torch.as_tensor(ys))
        raise ValueError(f"{what}: the {split} split is a {type(part).__name__}; give an ArrayDataset, an "
                         "(inputs, targets) pair of tensors or a map-style torch Dataset")

    train, val, test = (dataset(p, s) for p, s in zip(parts, ("train", "val", "test")))
    return Splits(train, val, test, name=what)
