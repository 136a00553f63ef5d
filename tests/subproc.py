"""The environment for tests that run trickbag in a subprocess (a fresh interpreter)."""

from __future__ import annotations

import os
from pathlib import Path


def subprocess_env() -> dict[str, str]:
    """One thread (results equal across runs) and this checkout's sources first on the path."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(Path(__file__).parents[1] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env
