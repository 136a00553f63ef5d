"""Atlas throughput: trials per minute with 1 and 2 workers, side by side in one run.

Runs the same small synthetic suite (two tasks x baseline + three tricks x seeds) once per worker
count, each into a fresh folder, in the order 1, 2, 2, 1 (``--repeats 2``, the default; medians
are printed), and prints trials per minute two ways: over the whole command (planning, the pre-flight
build of every cell, worker start-up) and over the trials alone (first trial's start to last
trial's end, from the study). On a 2-core machine 2 workers of one thread each against 1 worker of
two threads measures how well trials parallelise, not raw speed. About 2-3 minutes on 2 idle cores.

Run: python benchmarks/atlas_throughput.py [--seeds 3] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml

BASE = {
    "data": {"name": "synthetic", "options": {"num_train": 3072, "num_test": 512, "shape": [1, 16, 16],
                                                "num_classes": 4, "noise": 1.5}, "batch_size": 64, "val_fraction": 0.0},
    "model": {"name": "small_cnn", "width": 8},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5.0e-4},
    "schedule": {"name": "cosine_decay"},
    "train": {"epochs": 2, "progress": False, "checkpoint_every_epochs": None},
}


def suite(folder: Path, seeds: int) -> Path:
    (folder / "base.yaml").write_text(yaml.safe_dump(BASE))
    (folder / "mlp.yaml").write_text(yaml.safe_dump({**BASE, "model": {"name": "mlp", "hidden": [128]}}))
    raw = {"name": "throughput", "seeds": seeds, "metric": "test_acc",
           "tasks": {"cnn": {"config": "base.yaml"}, "mlp": {"config": "mlp.yaml"}},
           "tricks": {"label_smoothing": {"tricks": [{"label_smoothing": {"smoothing": 0.1}}]},
                      "mixup": {"tricks": [{"mixup": {"alpha": 0.2}}]},
                      "ema": {"tricks": [{"ema": {"decay": 0.95}}]}}}
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def trial_span(out: Path) -> float:
    """Seconds from the first trial's start to the last trial's end."""
    import optuna

    from trickbag import _study

    meta = json.loads((out / "atlas.json").read_text())
    study = optuna.load_study(study_name=meta["study"], storage=_study.existing_storage(meta["storage"], out))
    done = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    return (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="runs per worker count, in ABBA order (default 2: 1, 2, 2, 1)")
    args = parser.parse_args()
    from trickbag.atlas import run

    order = [1, 2, 2, 1] * (args.repeats // 2) + [1, 2] * (args.repeats % 2)
    results: dict[int, list[tuple[float, float, int]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="trickbag-atlas-bench-") as tmp:
        path = suite(Path(tmp), args.seeds)
        run(path, out=Path(tmp) / "warm-up", workers=1, seeds=1, progress=False, report=False)  # imports, data
        for i, workers in enumerate(order):
            out = Path(tmp) / f"run{i}-w{workers}"
            start = time.perf_counter()
            summary = run(path, out=out, workers=workers, progress=False, report=False)
            wall = time.perf_counter() - start
            n = summary["counts"]["done"]
            results[workers].append((wall, trial_span(out), n))
            print(f"run {i + 1}: {workers} worker(s): {n} trials, {wall:.1f}s in all, {trial_span(out):.1f}s of trials",
                  flush=True)
    print(f"\n{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f} at the end")
    print(f"{'workers':>7} | {'trials/min (command)':>20} | {'trials/min (trials only)':>24}")
    rate = {}
    for w in (1, 2):
        whole = statistics.median(n / wall * 60 for wall, _, n in results[w])
        only = statistics.median(n / span * 60 for _, span, n in results[w])
        rate[w] = (whole, only)
        print(f"{w:>7} | {whole:>20.1f} | {only:>24.1f}")
    print(f"\n2 workers / 1 worker: {rate[2][0] / rate[1][0]:.2f}x (command), {rate[2][1] / rate[1][1]:.2f}x (trials only)")


if __name__ == "__main__":
    main()
