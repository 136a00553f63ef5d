"""Checkpoints written atomically and read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trickbag._atomic import save_torch

__all__ = ["save_atomic", "load_checkpoint", "UnsafeFileError", "rng_state", "set_rng_state"]


class UnsafeFileError(ValueError):
    """A file that ``torch.load(weights_only=True)`` refused: it would construct objects other
    than tensors and plain containers (a pickle can run code), so it is never loaded."""


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync it, rename it over ``path``
    and fsync the folder: a crash or a full disk at any moment leaves either the old file or
    the new one, never a torn one (and no temporary file, unless the process was killed: the
    next run removes those)."""
    return save_torch(obj, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint (or any file ``torch.save`` wrote) with ``weights_only=True``:
    tensors and plain containers only, so a checkpoint can never run code. A damaged or
    truncated file raises a one-sentence ``ValueError``; one holding other objects (a
    malicious pickle) an :class:`UnsafeFileError`, also a ``ValueError``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        import pickle
        import re

        text = str(exc)
        if isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in text:
            found = re.search(r"(?:GLOBAL|global|operand):? ([\w.]+)", text)
            what = f" ({found.group(1)})" if found else ""
            raise UnsafeFileError(f"refusing to load {path}: it holds more than tensors and plain containers{what}, "
                                  "and a pickle can run code; it comes from elsewhere or was tampered with") from None
        reason = text.strip().splitlines()[0].split(". ")[0].rstrip(".") if text.strip() else "empty"
        raise ValueError(f"{path} is damaged or not a torch file ({type(exc).__name__}: {reason}); "
                         "it may have been cut short") from None


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch and CUDA generator states, in types ``weights_only`` accepts."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
