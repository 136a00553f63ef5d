"""The long-tailed ablation: cross-entropy vs focal vs class-balanced CE vs class-balanced
focal vs logit adjustment, paired over seeds, with per-class test accuracy.

    python docs/results/long_tailed/run.py --config configs/fashion_mnist_long_tailed.yaml --seeds 5 \
        --out docs/results/long_tailed [KEY=VALUE ...]
    python docs/results/long_tailed/run.py --report-only --out docs/results/long_tailed   # re-render only

Every (arm, seed) trains through `trickbag.train.build_run` with the arm's tricks added to the
config; seed i gives every arm the same initial weights and data order. Writes results.json
(per-class accuracies, times), report.md (against cross-entropy: the ablation report's rule,
simultaneous Bonferroni 95% intervals, Bonferroni-adjusted p-values and the verdicts read off those
intervals) and per_class.png. Rerunning skips finished (arm, seed) pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from trickbag._provenance import provenance
from trickbag.ablation.stats import arm_verdict, bonferroni, paired, resolution_of
from trickbag.train.build import build_run, load_splits
from trickbag.train.config import load_config

ARMS = {
    "cross-entropy": [],
    "focal (gamma 2)": [{"focal_loss": {"gamma": 2.0}}],
    "class-balanced CE": [{"class_balanced": {"beta": 0.9999}}],
    "class-balanced focal": [{"focal_loss": {"gamma": 2.0}}, {"class_balanced": {"beta": 0.9999}}],
    "logit adjustment": [{"logit_adjustment": {"tau": 1.0}}],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default="docs/results/long_tailed")
    ap.add_argument("--report-only", action="store_true", help="re-render report.md from results.json")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    out = Path(args.out)
    if args.report_only:
        report(out, json.loads((out / "results.json").read_text()))
        return
    if not args.config:
        ap.error("--config is required (unless --report-only)")
    out.mkdir(parents=True, exist_ok=True)
    store = out / "results.json"
    results = json.loads(store.read_text()) if store.exists() else {"trials": {}}
    base = load_config(args.config, args.overrides)
    splits = load_splits(base)
    counts = torch.bincount(splits.train.targets, minlength=len(splits.train.classes)).tolist()
    results.update({"config": args.config, "overrides": args.overrides, "train_counts": counts,
                    "classes": splits.train.classes, "provenance": provenance(), "arms": ARMS,
                    "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])})
    for seed in range(args.seeds):
        for arm, tricks in ARMS.items():
            key = f"{arm}|{seed}"
            if key in results["trials"]:
                continue
            cfg = load_config(base.to_dict() | {"tricks": [t.to_yaml() for t in base.tricks] + tricks})
            cfg.source = base.source
            cfg.train.seed = base.train.seed + seed
            cpu0, t0 = time.process_time(), time.perf_counter()
            run = build_run(cfg, splits=splits)
            res = run.fit()
            logits = run.trainer.predict(run.test_data)
            y = splits.test.targets
            pred = logits.argmax(1)
            per_class = [float((pred[y == c] == c).float().mean()) for c in range(len(counts))]
            results["trials"][key] = {"arm": arm, "seed": cfg.train.seed, "test_acc": res["test"]["test_acc"],
                                      "per_class": per_class, "wall_s": time.perf_counter() - t0,
                                      "cpu_s": time.process_time() - cpu0, "load": os.getloadavg()[0]}
            print(f"{arm:<22} seed {cfg.train.seed}: test_acc {res['test']['test_acc']:.4f}  "
                  f"tail (last 3) {statistics.fmean(per_class[-3:]):.3f}  ({time.perf_counter() - t0:.0f}s)", flush=True)
            store.write_text(json.dumps(results, indent=1))
    results["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store.write_text(json.dumps(results, indent=1))
    report(out, results)


def report(out: Path, results: dict) -> None:
    from trickbag.report import Page
    from trickbag.report.plots import COLORS, pyplot

    trials = results["trials"]
    arms = list(results["arms"])
    by_arm = {a: {t["seed"]: t for t in trials.values() if t["arm"] == a} for a in arms}
    ref = {s: t["test_acc"] for s, t in by_arm[arms[0]].items()}
    m = len(arms) - 1
    resolution = resolution_of([t["test_acc"] for t in trials.values()])
    rows, tested = [], []
    for a in arms:
        vals = [t["test_acc"] for t in by_arm[a].values()]
        tail = [statistics.fmean(t["per_class"][-3:]) for t in by_arm[a].values()]
        row = {"arm": a, "n": len(vals), "acc": statistics.fmean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
               "tail": statistics.fmean(tail), "cpu": statistics.fmean(t["cpu_s"] for t in by_arm[a].values())}
        if a != arms[0]:
            arm_acc = {s: t["test_acc"] for s, t in by_arm[a].items()}
            row["paired"] = paired(ref, arm_acc)
            row["simultaneous"] = paired(ref, arm_acc, confidence=1 - 0.05 / m)
            tested.append(row)
        rows.append(row)
    # the ablation report's rule: Bonferroni p-values and the simultaneous intervals they agree with
    for r, p in zip(tested, bonferroni([r["paired"].p_value for r in tested])):
        s = r["simultaneous"]
        r["p_bonferroni"] = p
        r["verdict"] = arm_verdict(s.n, s.ci_low, s.ci_high, maximize=True, sd=s.std, mean=s.mean,
                                   resolution=resolution)
    page = Page("Long-tailed classification: CE vs focal vs class-balanced vs logit adjustment")
    counts = results["train_counts"]
    page.paragraph(f"Config {results['config']} {' '.join(results['overrides'])}; training classes "
                   f"{counts[0]} down to {counts[-1]} examples (imbalance {counts[0] / counts[-1]:.0f}), "
                   f"{sum(counts)} in all; balanced test set, so test accuracy is the mean per-class accuracy.")
    headers = ["arm", "seeds", "test acc", "sd", "effect vs CE", "simultaneous 95% CI (Bonferroni)",
               "p (Bonferroni)", "verdict", "tail-3 acc", "CPU s / run"]
    table = []
    for r in rows:
        p = r.get("simultaneous")
        table.append([r["arm"], r["n"], r["acc"], r["sd"], f"{p.mean:+.4f}" if p else "",
                      f"[{p.ci_low:+.4f}, {p.ci_high:+.4f}]" if p else "", r.get("p_bonferroni", ""),
                      r.get("verdict", "reference"), r["tail"], r["cpu"]])
    page.table(headers, table)
    page.paragraph("Effects are paired over seeds (seed i: same initial weights and data order in every arm). "
                   f"One multiplicity rule, the ablation report's: scipy's paired t interval at level 1 - 0.05/{m} "
                   f"(Bonferroni over the {m} comparisons with cross-entropy), p-values min(1, {m} p), and the "
                   "verdict read off the interval (helps or hurts when it excludes 0), so the three agree. "
                   "tail-3 acc: mean test accuracy of the three rarest classes.")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    x = list(range(len(counts)))
    for i, a in enumerate(arms):
        per = [statistics.fmean(t["per_class"][c] for t in by_arm[a].values()) for c in x]
        ax.plot(x, per, marker="o", color=COLORS[i], label=a, linewidth=1.4)
    ax.set_xticks(x, [f"{n[:8]}\n{c}" for n, c in zip(results["classes"], counts)], fontsize=7)
    ax.set_xlabel("class (training examples), head to tail")
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "per_class.png")
    plt.close(fig)
    page.image("per_class.png", "Per-class test accuracy, mean over seeds")
    prov = results["provenance"]
    page.heading("Provenance")
    page.bullets([f"command: {results['command']}",
                  f"trickbag {prov['trickbag']}, git {prov['git']}, torch {prov['torch']}, {prov['hardware'].get('cpu')}",
                  f"wall time in all: {sum(t['wall_s'] for t in trials.values()) / 60:.1f} min; CPU time "
                  f"{sum(t['cpu_s'] for t in trials.values()) / 60:.1f} min; 1-minute load average during the runs "
                  f"{min(t['load'] for t in trials.values()):.1f} to {max(t['load'] for t in trials.values()):.1f}"])
    page.write(out)
    print((out / "report.md").read_text())


if __name__ == "__main__":
    main()
