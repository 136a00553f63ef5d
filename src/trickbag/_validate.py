"""Argument checks shared by every public function.

Each check raises ``ValueError`` naming the argument, the bad value and what would be valid,
so that a user reading only the message knows what to change.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

__all__: list[str] = []  # private module


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The choices closest to ``name`` by spelling, best first."""
    choices = list(choices)
    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not found:  # substring matches help with prefixes such as "warmup"
        found = [c for c in choices if name and (name in c or c in name)][:n]
    return found


def unknown(kind: str, name: Any, choices: Iterable[str]) -> ValueError:
    """A ``ValueError`` for an unknown name, with the closest valid names and the full list."""
    choices = sorted(choices)
    near = closest(str(name), choices)
    hint = f"; did you mean {', '.join(repr(c) for c in near)}?" if near else ""
    return ValueError(f"unknown {kind} {name!r}{hint} Valid: {', '.join(choices)}")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_real(name: str, value: Any) -> float:
    if not _is_real(value) or math.isnan(value):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return value


def check_positive(name: str, value: Any) -> Any:
    check_real(name, value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def check_nonnegative(name: str, value: Any) -> Any:
    check_real(name, value)
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_range(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """Check ``low <= value <= high`` (or open at either end) and return ``value``."""
    check_real(name, value)
    ok_low = value > low if low_open else value >= low
    ok_high = value < high if high_open else value <= high
    if not (ok_low and ok_high):
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {left}{low}, {high}{right}, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise unknown(name, value, choices)
    return value


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested mappings, each as
    ``"key (old -> new)"`` (a key only one side has shows ``missing``): what a refusal to mix
    results of two configs names.

    Example:
        >>> changed_keys({"optimizer": {"lr": 0.1}, "seed": 1}, {"optimizer": {"lr": 0.2}, "seed": 1})
        ['optimizer.lr (0.1 -> 0.2)']
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in new or key not in old:
                out.append(f"{name} ({old.get(key, 'missing')!r} -> {new.get(key, 'missing')!r})")
            else:
                out += changed_keys(old[key], new[key], name)
        return out
    return [] if old == new else [f"{prefix or 'value'} ({old!r} -> {new!r})"]
