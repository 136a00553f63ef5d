"""The fast base: accuracy over seeds and time per run of configs/cifar10_speedrun.yaml, beside the
repository's plain ResNet-18 loop (configs/cifar10_resnet18.yaml), timed in the same process.

GPU (default when CUDA is present): the CIFAR-10 JPEG pack is decoded once and kept on the
device; one warm-up run compiles (its extra time is reported as compile time); then one run per
seed, timed with CUDA events around ``fit()`` (training only: the test evaluation with TTA comes
after and is timed apart, as the public records time them). Then the ResNet-18 config, timed the
same way, for the ratio. Prints the table and writes a JSON summary.

CPU (``--quick``): the same code on a few hundred synthetic images and a narrow network, to check
that the script runs; its numbers mean nothing.

Run: python benchmarks/cifar10_speedrun.py [--seeds 10] [--baseline-runs 1] [--out speedrun.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

from trickbag.train.build import build_run, load_splits  # noqa: E402
from trickbag.train.config import load_config  # noqa: E402

SMALL_RUN = ["data.batch_size=64", "data.eval_batch_size=128", "train.steps=8", "train.epochs=2",
             "train.precision=fp32", "train.channels_last=false", "train.compile=false", "train.device=cpu"]
QUICK = [*SMALL_RUN, "model.widths=[8,16,16]"]
QUICK_BASELINE = [*SMALL_RUN, "model.depth=8"]


def with_seed(cfg, seed: int):
    new = cfg.replace()  # a deep copy
    new.train.seed = seed
    return new


def quick_splits():
    """A few hundred synthetic 32x32 images in ten classes, for the CPU smoke runs."""
    from trickbag.data import Splits, synthetic

    raw = synthetic(num_train=320, num_test=128, shape=(3, 32, 32), num_classes=10, seed=0)
    return Splits(raw.train, None, raw.test, name="synthetic")


def timed_fit(cfg, splits, device: torch.device) -> dict:
    """Build a run from ``cfg`` on the loaded ``splits``, train it, evaluate the test split.

    ``grad_scale`` is the fp16 gradient scaler's final scale (None otherwise): it starts at 2^16
    and, in runs shorter than its growth interval (2,000 steps), halves once per skipped step."""
    t0 = time.perf_counter()
    run = build_run(cfg, splits=splits)
    run.trainer._prepare()  # model on the device, optimizer, (lazy) compilation wrapper
    build = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run.trainer.fit()
        end.record()
        end.synchronize()
        train_s = start.elapsed_time(end) / 1e3
    else:
        t1 = time.perf_counter()
        run.trainer.fit()
        train_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    test = run.trainer.evaluate(run.test_data, prefix="test")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    eval_s = time.perf_counter() - t2
    scaler = run.trainer.state.scaler
    return {"train_s": train_s, "eval_s": eval_s, "build_s": build, "test_acc": test["test_acc"],
            "steps": run.trainer.state.step, "grad_scale": scaler.get_scale() if scaler is not None else None}


def summarize(runs: list[dict], warm: dict) -> dict:
    """Accuracy over the seeds' runs (mean, sd), median times, and the compile time: the warm-up
    run's training time beyond the median run's. ``skipped_steps``: per fp16 run, the steps the
    gradient scaler skipped (from its final scale; None in bf16 and fp32)."""
    accs = [r["test_acc"] for r in runs]
    train = statistics.median(r["train_s"] for r in runs)
    scales = [r.get("grad_scale") for r in runs]
    return {
        "seeds": len(runs),
        "test_acc_mean": statistics.mean(accs),
        "test_acc_sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "train_s_median": train,
        "eval_s_median": statistics.median(r["eval_s"] for r in runs),
        "build_s_median": statistics.median(r["build_s"] for r in runs),
        "compile_s": max(0.0, warm["train_s"] - train),
        "steps": runs[0]["steps"],
        "skipped_steps": None if scales[0] is None else [round(math.log2(2.0**16 / s)) for s in scales],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "cifar10_speedrun.yaml"))
    ap.add_argument("--baseline", default=str(ROOT / "configs" / "cifar10_resnet18.yaml"))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--baseline-runs", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="a CPU smoke run on synthetic data")
    ap.add_argument("--out", default=None, help="write the summary here as JSON")
    ap.add_argument("overrides", nargs="*", help="key=value overrides of the speedrun config")
    args = ap.parse_args(argv)

    quick = args.quick or not torch.cuda.is_available()
    extra = QUICK if quick else []
    cfg = load_config(args.config, [*extra, *args.overrides])
    base = load_config(args.baseline, QUICK_BASELINE if quick else [])
    device = torch.device("cpu" if quick else "cuda")
    if quick:
        from trickbag.data import Splits, split_off

        splits = quick_splits()
        base_splits = Splits(*split_off(splits.train, 0.1), splits.test, name="synthetic")
    else:
        torch.backends.cudnn.benchmark = True  # as the records run (the warm-up run absorbs the tuning)
        t0 = time.perf_counter()
        splits = load_splits(cfg)
        base_splits = load_splits(base)
        print(f"data decoded and split in {time.perf_counter() - t0:.1f} s", flush=True)

    warm = timed_fit(with_seed(cfg, 10_000), splits, device)
    runs = []
    for seed in range(args.seeds):
        r = timed_fit(with_seed(cfg, seed), splits, device)
        runs.append(r)
        print(f"seed {seed}: test acc (TTA) {r['test_acc']:.4f}  train {r['train_s']:.3f} s  "
              f"eval {r['eval_s']:.3f} s", flush=True)
    baseline = [timed_fit(with_seed(base, s), base_splits, device) for s in range(args.baseline_runs)]

    summary = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (quick check; not a result)",
        "torch": torch.__version__,
        "config": str(Path(args.config).name),
        "overrides": [*extra, *args.overrides],
        **summarize(runs, warm),
        "baseline_config": str(Path(args.baseline).name),
        "baseline_train_s": statistics.median(b["train_s"] for b in baseline),
        "baseline_test_acc": statistics.mean(b["test_acc"] for b in baseline),
        "runs": runs,
    }
    train = summary["train_s_median"]
    summary["speedup_vs_baseline"] = summary["baseline_train_s"] / train
    print(f"\n{summary['config']} on {summary['device']}: test accuracy with TTA "
          f"{100 * summary['test_acc_mean']:.2f} +- {100 * summary['test_acc_sd']:.2f} % over {args.seeds} seeds; "
          f"{train:.3f} s a run (median; training, {summary['steps']} steps), evaluation {summary['eval_s_median']:.3f} s, "
          f"build {summary['build_s_median']:.3f} s, compile {summary['compile_s']:.1f} s once")
    print(f"{summary['baseline_config']}: {summary['baseline_train_s']:.2f} s, test accuracy "
          f"{100 * summary['baseline_test_acc']:.2f} %; the speedrun trains {summary['speedup_vs_baseline']:.1f}x faster")
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
