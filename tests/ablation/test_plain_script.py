"""`trickbag.ablation.run(...)` at the module level of a plain script, with worker processes
(issue 24 item 2): spawned workers re-import the script, so without the
`if __name__ == "__main__":` guard they used to die (BrokenProcessPool, every trial FAILED)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap

import yaml

from subproc import subprocess_env
from trickbag._study import _under_main_guard, unguarded_main_call

BASE = {
    "data": {"name": "synthetic", "options": {"num_train": 240, "num_test": 32, "shape": [8], "num_classes": 3},
             "batch_size": 32},
    "model": {"name": "mlp", "hidden": [16]},
    "optimizer": {"name": "sgd", "lr": 0.05},
    "train": {"epochs": 1, "threads": 1},
    "ablation": {"workers": 2},
}

SCRIPT = """
import json
import trickbag.ablation

summary = trickbag.ablation.run("base.yaml", "label_smoothing", seeds=2, out="out", progress=False)
print(json.dumps({r["label"]: r["n"] for r in summary["rows"]}))
"""


def test_an_unguarded_script_runs_every_trial_in_process_and_says_how_to_get_workers(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "study.py").write_text(SCRIPT)
    done = subprocess.run([sys.executable, "study.py"], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "FAILED" not in done.stderr + done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"baseline": 2, "label_smoothing:smoothing=0.1": 2}
    note = [line for line in done.stderr.splitlines() if line.startswith("note: study.py:5 starts 2 worker processes")]
    assert len(note) == 1 and 'if __name__ == "__main__":' in note[0], done.stderr[-2000:]


def test_the_guard_is_read_from_the_script():
    code = textwrap.dedent("""
        import x
        x.run()                        # 3: unguarded
        def main():
            x.run()                    # 5: inside a function (the caller's line decides)
        if __name__ == "__main__":
            main()                     # 7: guarded
            x.run(a=1,
                  b=2)                 # 9: guarded, second line of a call
        if "__main__" == __name__:
            x.run()                    # 11: guarded, operands swapped
        if __name__ == "__mp_main__":
            x.run()                    # 13: not the guard
    """)
    tree = ast.parse(code)
    assert [n for n in range(1, 14) if _under_main_guard(tree, n)] == [7, 8, 9, 11]


def test_python_m_of_a_package_main_is_not_flagged(tmp_path):
    """`python -m trickbag ablate --workers 2` runs trickbag/__main__.py, unguarded; spawned workers
    do not re-import a package's __main__, so it keeps its worker processes."""
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    probe = "from trickbag._study import unguarded_main_call\nprint(unguarded_main_call())\n"
    (pkg / "__main__.py").write_text(probe)
    (pkg / "tool.py").write_text(probe)
    env = {**subprocess_env(), "PYTHONPATH": f"{tmp_path}:{subprocess_env()['PYTHONPATH']}"}
    run = lambda *a: subprocess.run([sys.executable, *a], cwd=tmp_path, env=env, capture_output=True, text=True,
                                    timeout=120).stdout.strip()
    assert run("-m", "mypkg") == "None"
    assert run("-m", "mypkg.tool") == "tool.py:2"  # re-imported by name as __mp_main__: flagged
    assert run(str(pkg / "tool.py")) == "tool.py:2"
    assert unguarded_main_call() is None  # under pytest
