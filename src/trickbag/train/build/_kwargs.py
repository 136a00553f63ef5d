"""Check a config's keyword arguments against the function they go to (every build step uses this)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from trickbag._validate import unknown


def _check_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any], what: str, skip: tuple[str, ...] = ()) -> None:
    """Unknown keyword arguments and missing required ones become ValueErrors naming them."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if p.kind is not p.VAR_POSITIONAL and n not in skip and n != "self"]
    for key in kwargs:
        if key not in valid:
            raise unknown(f"parameter for {what}", key, valid)
    missing = [n for n in valid if params[n].default is inspect.Parameter.empty and n not in kwargs
               and params[n].kind is not inspect.Parameter.VAR_KEYWORD]
    if missing:
        hint = [f"{m} (or {m[:-6]}_epochs)" if m.endswith("_steps") else m for m in missing]
        raise ValueError(f"{what} needs {', '.join(hint)}")
