"""Shared fixtures: seeded generators, markers for CUDA-only tests, and a guard that the suite
leaves the checkout as it found it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

# Tests compare numbers; keep CPU math single-threaded-deterministic and quiet.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def _git_status(root: Path) -> set[str] | None:
    """``git status --porcelain`` lines of the checkout holding ``root`` (untracked files listed
    one by one, ignored ones not), or None outside a git checkout or without git."""
    if shutil.which("git") is None:
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=all"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return set(out.stdout.splitlines()) if out.returncode == 0 else None


@pytest.fixture(scope="session", autouse=True)
def _checkout_stays_clean():
    """Fail the session when tests wrote into the checkout: every path that ``git status`` shows
    at the end and did not show at the start (tests write to ``tmp_path``, never beside the
    code; MLflow's default ``./mlruns`` was one such leak)."""
    root = Path(__file__).resolve().parent.parent
    before = _git_status(root)
    yield
    if before is None:
        return
    after = _git_status(root)
    new = sorted((after or set()) - before)
    if new:
        pytest.fail("the tests left the checkout dirty (write to tmp_path instead):\n  " + "\n  ".join(new),
                    pytrace=False)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none here)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


from pg_server import postgres_url  # noqa: E402,F401  (a real PostgreSQL server, for multi-worker tests)
