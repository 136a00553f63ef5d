"""Arms x seeds (or x cross-validation folds) of a run config, one JSON line per trial.

An arm is ``none`` or a trick added to the config's own (``fgm:epsilon=1.0``). Seed i gives every
arm the same initial weights and data order (and, with ``--fold-key``, the same test fold i), so
arms are paired. Trials already in ``--out`` are skipped: an interrupted run continues. The
training time is the sum of the epochs' training phases (evaluation excluded), and the CPU
time and the machine's load average are recorded with it.

    python docs/results/run_arms.py --config configs/mr_textcnn_small.yaml --seeds 0-9 \
        --fold-key data.options.fold --arms none fgm:epsilon=1.0 --out runs.jsonl [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from trickbag.train.build import build_run
from trickbag.train.config import load_config, parse_trick


def numbers(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--arms", nargs="+", default=["none"], help="'none' or trick specs, e.g. fgm:epsilon=1.0")
    p.add_argument("--seeds", default="0-2", help="e.g. 0-9 or 0,3,5")
    p.add_argument("--fold-key", help="a config key set to the seed too (data.options.fold for cross-validation)")
    p.add_argument("--variant", default="", help="a label for this set of overrides (a row of the results)")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    def done() -> set[tuple[str, str, int]]:  # re-read before each trial: several processes may share --out
        if not out.exists():
            return set()
        return {(r["variant"], r["arm"], r["seed"]) for r in map(json.loads, out.read_text().splitlines())}

    for seed in numbers(args.seeds):
        for arm in args.arms:
            if (args.variant, arm, seed) in done():
                continue
            overrides = [*args.overrides, f"train.seed={seed}", "train.progress=false"]
            if args.fold_key:
                overrides.append(f"{args.fold_key}={seed}")
            cfg = load_config(args.config, overrides)
            if arm != "none":
                cfg.tricks = [*cfg.tricks, parse_trick(arm)]
            wall, cpu, load = time.perf_counter(), time.process_time(), os.getloadavg()[0]
            results = build_run(cfg).fit()
            history = results["history"]
            final = results["final"]
            record = {
                "variant": args.variant, "arm": arm, "seed": seed, "config": args.config, "overrides": args.overrides,
                "test": results.get("test", {}),
                "final": {k: v for k, v in final.items() if isinstance(v, (int, float))},
                "best_epoch": final.get("best_epoch", len(history)),
                "epochs": len(history), "stopped": results.get("stopped"),
                "train_time": sum(h["epoch_time"] for h in history),
                "wall_time": time.perf_counter() - wall, "cpu_time": time.process_time() - cpu,
                "threads": args.threads, "load_before": load, "load_after": os.getloadavg()[0],
                "curves": {k: [round(h[k], 4) for h in history if k in h]
                           for k in ("val_acc", "val_robust_acc", "probe_pgd_acc", "probe_fgsm_acc")},
            }
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            test = " ".join(f"{k} {v:.4f}" for k, v in record["test"].items() if k.endswith("acc"))
            print(f"{args.variant or '-'} | {arm} | seed {seed}: {test} | train {record['train_time']:.0f}s "
                  f"wall {record['wall_time']:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
