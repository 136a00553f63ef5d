"""Atomic file writes and the clean-up of what killed writes leave behind (private).

Every artefact trickbag writes (weights, checkpoints, results, configs, reports, plots) goes
through :func:`atomic_path`: the bytes go to a temporary file in the same folder, are flushed
and fsynced, and the file is renamed over the target, then the folder is fsynced. A crash or a
full disk at any moment leaves the old file or the new one, never a torn one. A temporary file
is named ``.<name>.<random>.<pid>@<host>.tmp``, so that :func:`remove_orphans` can tell the
leftovers of dead writers from files that a live process is still writing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__: list[str] = []

_HOST = socket.gethostname()
_OURS = re.compile(r"^\..+\.[0-9a-f]{8}\.(?P<pid>\d+)@(?P<host>[^/]+)\.tmp$")
_LEGACY = re.compile(r"^\..+\.tmp$")  # mkstemp names of older versions: .last.pt.k3j2_x9a.tmp


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some file systems do not open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def kill_point(kind: str) -> None:
    """A test hook: with ``TRICKBAG_KILL_AFTER=<kind>:<n>`` in the environment the process
    kills itself (SIGKILL) at the ``n``-th event of that kind: ``checkpoint``, right after a
    checkpoint is written; ``write``, in the middle of an atomic write (the temporary file
    written, not yet renamed). Tests stop runs there and resume them."""
    spec = os.environ.get("TRICKBAG_KILL_AFTER")
    if not spec:
        return
    want, _, n = spec.partition(":")
    if want != kind:
        return
    _KILL_COUNTS[kind] = _KILL_COUNTS.get(kind, 0) + 1
    if str(_KILL_COUNTS[kind]) == n.strip():
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


_KILL_COUNTS: dict[str, int] = {}


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, fsync the file and
    rename it over ``path``; when it fails (a full disk, an exception), remove it and re-raise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.{os.getpid()}@{_HOST}.tmp"
    try:
        yield tmp
        kill_point("write")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # name the file that was not written
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, **kwargs: Any) -> Path:
    """Write ``json.dumps(obj, indent=1, **kwargs)`` to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=1, **kwargs))


class _Recorder:
    """A file's ``write`` that remembers the first ``OSError`` (torch's writer turns it into a
    RuntimeError about positions, losing the errno: a full disk must still say so)."""

    def __init__(self, f: Any):
        self.f, self.error = f, None

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.f.flush()


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically (a failed write raises the ``OSError``, e.g.
    ``ENOSPC``)."""
    import torch

    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            recorder = _Recorder(f)
            try:
                torch.save(obj, recorder)
            except RuntimeError:
                if recorder.error is not None:
                    raise recorder.error from None
                raise
    return path


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """``fig.savefig`` to ``path`` atomically (the format taken from ``path``'s suffix)."""
    path = Path(path)
    fmt = kwargs.pop("format", None) or path.suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)
    return path


def target_of(path: str) -> str:
    """The file a temporary file of :func:`atomic_path` stands for (other paths unchanged)."""
    p = Path(path)
    m = _OURS.match(p.name)
    if m is None:
        return path
    return str(p.parent / p.name[1:m.start("pid") - 10])


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and write and remove a probe file in it: an unwritable,
    read-only or full folder fails here (``OSError``), before any work whose results would be
    lost."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes(folder / ".trickbag-probe", b"probe\n")
    (folder / ".trickbag-probe").unlink()
    return folder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def is_orphan(name: str) -> bool:
    """Whether a file name is a temporary file of a write that can no longer finish: written
    by a process of this host that is gone, or by an older trickbag (random names)."""
    m = _OURS.match(name)
    if m is not None:
        return m["host"] == _HOST and not _pid_alive(int(m["pid"]))
    return bool(_LEGACY.match(name))


def remove_orphans(*folders: str | Path) -> list[Path]:
    """Remove the temporary files that killed writes left in ``folders`` (not recursive);
    returns the removed paths. Files of live writers and of other hosts are left alone."""
    removed = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.is_file() and not entry.is_symlink() and is_orphan(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def tidy_folder(folder: str | Path) -> list[Path]:
    """Remove the orphan temporary files of killed writes in ``folder`` and return what is
    left in it (``[]`` for a missing folder, or one whose only files were orphans: a run
    killed during its first write counts as new, not as "not empty"). Every tool calls it
    where it opens its output folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    remove_orphans(folder)
    return sorted(folder.iterdir())
