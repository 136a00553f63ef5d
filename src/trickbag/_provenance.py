"""Where a result came from: versions, git revisions, hardware (private).

Git is only asked read-only questions, with ``--no-optional-locks``: recording provenance
never takes a repository's ``index.lock`` (a plain ``git status`` refreshes and rewrites the
index, which fails or races when the user runs git in that checkout at the same moment).
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

import trickbag

__all__: list[str] = []

_GIT = ["git", "--no-optional-locks"]


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    return subprocess.run([*_GIT, "-C", str(root), *args], capture_output=True, text=True, timeout=5, env=env)


def git_revision(root: str | Path | None = None) -> str:
    """``<short sha>`` of the checkout at ``root`` (default: trickbag's own source tree), with
    ``-dirty`` when tracked files differ from it; ``"unknown"`` outside a git checkout. Never
    writes to the repository."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    try:
        head = _git(root, "rev-parse", "--short=12", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _toplevel(path: Path) -> str | None:
    try:
        out = _git(path, "rev-parse", "--show-toplevel")
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),  # the machine's, not the thread setting
        "torch_threads": torch.get_num_threads(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def provenance() -> dict[str, Any]:
    """trickbag's version and revision, torch's version, the hardware, and the revision of the
    git checkout the command runs in (``workdir_git``; when it is a different checkout)."""
    out: dict[str, Any] = {
        "trickbag": trickbag.__version__,
        "git": git_revision(),
        "torch": torch.__version__,
        "hardware": hardware(),
    }
    cwd = Path.cwd()
    top = _toplevel(cwd)
    if top is not None and top != _toplevel(Path(__file__).resolve().parent):
        out["workdir_git"] = git_revision(cwd)
    return out
