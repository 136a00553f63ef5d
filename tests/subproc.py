"""The environment for tests that run trickbag in a subprocess (a fresh interpreter)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def subprocess_env() -> dict[str, str]:
    """One thread (results equal across runs) and this checkout's sources first on the path."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(Path(__file__).parents[1] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def resume_after_kill(cmd: list[str], read_trials, *, slots: int, in_flight: int, timeout: float = 600):
    """After a SIGKILL part way through a planned run (ablation, atlas): rerunning ``cmd`` finishes
    every one of ``slots`` exactly once, repeats no trial finished before the kill and fails at most
    the ``in_flight`` trials the kill cut short. ``read_trials()`` returns (study, {slot: trial},
    [slot of each finished trial]). Returns the rerun's CompletedProcess."""
    _, at_kill, _ = read_trials()
    assert 3 <= len(at_kill) < slots, "kill the run part way through"
    resumed = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    study, by_slot, done = read_trials()
    assert len(done) == len(set(done)) == slots  # every slot finished exactly once
    for slot, trial in at_kill.items():  # finished trials were not repeated
        assert by_slot[slot].number == trial.number and by_slot[slot].datetime_complete == trial.datetime_complete
    failed = [t for t in study.get_trials() if t.state.name == "FAIL"]
    assert len(failed) <= in_flight and all("stopped" in t.user_attrs.get("failure", "") for t in failed)
    return resumed
