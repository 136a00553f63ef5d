"""Every Python block of the README runs as written, on CPU, in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from subproc import subprocess_env
from trickbag.data.vision import DEBIAN_FMNIST

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, tmp_path):
    code = BLOCKS[index]
    if "fashion_mnist()" in code and not DEBIAN_FMNIST.exists():
        pytest.skip("needs Debian's dataset-fashion-mnist (.ci/run installs it)")
    (tmp_path / "block.py").write_text(code)
    done = subprocess.run([sys.executable, "block.py"], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"README block {index}:\n{code}\n{done.stderr[-3000:]}"
    printed = [float(v) for v in re.findall(r"(?<![\w.])-?\d+\.\d+(?:e-?\d+)?", done.stdout)]
    if "print(" in code:  # what it prints is a number that makes sense for what it shows
        assert printed, f"README block {index} printed no number:\n{done.stdout[-2000:]}"
    if "validation accuracy" in code:  # a training run: well above chance (0.1), near the quoted value
        quoted = re.search(r"# (\d\.\d+) on CPU", code)
        assert quoted, "the Trainer snippet quotes the accuracy it prints"
        assert printed[-1] > 0.6 and abs(printed[-1] - float(quoted.group(1))) < 0.05, done.stdout[-2000:]
    if "robust_accuracy(" in code:
        assert 0.0 <= printed[-1] <= 1.0
    match = re.search(r'run_dir="([^"]+)"', code)
    if match and "Checkpoint(" in code:  # what the block says it writes, it writes
        assert (tmp_path / match.group(1) / "checkpoints" / "last.pt").exists()
