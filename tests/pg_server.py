"""A real PostgreSQL server from Debian's packages, started by the tests themselves."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _bindir() -> Path | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return Path(dirs[-1]) if dirs and Path(dirs[-1], "initdb").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """Start a throwaway server on a free local port; yield its SQLAlchemy-style URL."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (extra: postgres)")
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are not installed (Debian package postgresql; .ci/run installs it)")
    root = Path(tempfile.mkdtemp(prefix="trickbag-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        for p in (root, sock):
            os.chown(p, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def pg(*args: str) -> None:
        subprocess.run(prefix + [str(bindir / args[0]), *args[1:]], check=True, capture_output=True, timeout=120)

    pg("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    pg("pg_ctl", "-D", str(data), "-l", str(root / "log"), "-w", "-o",
       f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "trickbag")
        yield f"postgresql://postgres@127.0.0.1:{port}/trickbag"
    finally:
        subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
