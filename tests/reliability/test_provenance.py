"""Recording provenance never writes to a git checkout (issue 16, item 12): a plain
`git status` refreshes and rewrites the index (taking index.lock), which races with the user's
own git commands in that checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from trickbag import _provenance

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com")
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


@pytest.fixture
def repo_with_a_stale_index(tmp_path) -> Path:
    """A checkout whose index is out of date with a file's timestamp (content unchanged): the
    situation in which `git status` rewrites the index."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-q", "-m", "a")
    later = time.time() + 5
    os.utime(repo / "a.txt", (later, later))
    return repo


def index_state(repo: Path) -> tuple[bytes, int]:
    index = repo / ".git" / "index"
    return index.read_bytes(), index.stat().st_mtime_ns


def test_the_check_can_see_a_rewritten_index(repo_with_a_stale_index):
    before = index_state(repo_with_a_stale_index)
    git(repo_with_a_stale_index, "status", "--porcelain")  # what provenance used to run
    assert index_state(repo_with_a_stale_index) != before


def test_git_revision_leaves_the_index_alone(repo_with_a_stale_index):
    before = index_state(repo_with_a_stale_index)
    head = git(repo_with_a_stale_index, "rev-parse", "--short=12", "HEAD").strip()
    assert _provenance.git_revision(repo_with_a_stale_index) == head  # same content: not dirty
    assert index_state(repo_with_a_stale_index) == before
    (repo_with_a_stale_index / "a.txt").write_text("changed\n")
    assert _provenance.git_revision(repo_with_a_stale_index) == head + "-dirty"


def test_provenance_records_the_working_directory_revision(repo_with_a_stale_index, monkeypatch):
    monkeypatch.chdir(repo_with_a_stale_index)
    before = index_state(repo_with_a_stale_index)
    meta = _provenance.provenance()
    assert meta["workdir_git"] == git(repo_with_a_stale_index, "rev-parse", "--short=12", "HEAD").strip()
    assert index_state(repo_with_a_stale_index) == before
    assert "git" in meta and "torch" in meta


def test_outside_a_checkout_the_revision_is_unknown(tmp_path):
    assert _provenance.git_revision(tmp_path) == "unknown"


def test_hardware_records_the_machines_cpu_count_and_the_thread_setting_apart():
    import os

    import torch

    from trickbag._provenance import hardware

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        info = hardware()
    finally:
        torch.set_num_threads(before)
    assert info["cpu_count"] == os.cpu_count() and info["torch_threads"] == 1
