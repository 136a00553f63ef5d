"""The wheel carries what an installed trickbag needs: the method cards behind `trickbag show`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_an_installed_wheel_shows_method_cards(tmp_path):
    out = tmp_path / "wheel"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = out.glob("trickbag-*.whl")
    # Lay the wheel out as pip installs it into a prefix: the package in site-packages, the
    # data files (the cards) under the prefix.
    prefix = tmp_path / "prefix"
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert any(n.endswith("share/trickbag/tricks/mixup.md") for n in names), "cards missing from the wheel"
        assert any(n.endswith("share/trickbag/tricks/img/sgdr.png") for n in names)
        for n in names:
            if ".data/data/" in n:
                target = prefix / n.split(".data/data/", 1)[1]
            else:
                target = site / n
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(n))
    code = ("import trickbag, trickbag.cli as c; assert 'site-packages' in trickbag.__file__, trickbag.__file__; "
            "raise SystemExit(c.main(['show', 'mixup']))")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "# mixup" in shown.stdout and "Beta(alpha, alpha)" in shown.stdout
