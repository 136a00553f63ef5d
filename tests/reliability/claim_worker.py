"""A worker of the claim stress test: wait for a start signal so that every worker opens the
fresh storage at the same moment, then claim, 'run' (sleep) and finish slots until none is
left; write the trial numbers and slots it claimed as JSON (or the traceback) to ``result``."""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

from trickbag import _study


def work(url: str, name: str, n_slots: int, go: Path, seconds: float, result: Path) -> None:
    """Run in a forked process; exits with 0, or 1 after writing the traceback."""
    try:
        slots = [{"slot": f"s{i}", "arm": 0, "seed": i} for i in range(n_slots)]
        while not go.exists():
            time.sleep(0.001)
        store = _study.open_storage(url)
        planned = _study.PlannedStudy(store, name, "maximize", slots, "stress-plan", grace=600.0)
        planned.open()
        claimed = []
        while True:
            trial = planned.claim()
            if trial is None:
                break
            claimed.append([trial.number, trial.user_attrs["slot"]])
            time.sleep(seconds)
            planned.finish(trial, 1.0, {"done_by": planned.worker})
        result.write_text(json.dumps(claimed))
        code = 0
    except BaseException:
        result.write_text(json.dumps({"error": traceback.format_exc()}))
        code = 1
    os._exit(code)


def open_only(url: str, go: Path, result: Path) -> None:
    """Open (creating) the storage as soon as ``go`` exists; exit 0, or 1 with the traceback."""
    try:
        while not go.exists():
            time.sleep(0.0005)
        _study.open_storage(url)
        result.write_text("ok")
        code = 0
    except BaseException:
        result.write_text(traceback.format_exc())
        code = 1
    os._exit(code)
