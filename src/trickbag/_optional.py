"""Imports of optional dependencies with a message naming the extra that provides them."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__: list[str] = []  # private module


def require(module: str, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` that says which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f"{feature} needs" if feature else "this needs"
        raise ImportError(
            f"{what} the optional dependency {module.split('.')[0]!r}; "
            f"install it with: pip install 'trickbag[{extra}]'"
        ) from exc


def available(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
