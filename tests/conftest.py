"""Shared fixtures: seeded generators, and markers for CUDA-only tests."""

from __future__ import annotations

import os

import pytest
import torch

# Tests compare numbers; keep CPU math single-threaded-deterministic and quiet.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none here)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


from pg_server import postgres_url  # noqa: E402,F401  (a real PostgreSQL server, for multi-worker tests)
