"""Tables from run_arms.py's JSON lines: per arm the mean with a 95% t-interval over seeds (or
folds), the paired difference from the reference arm with its interval and p-value, and the
training time relative to the reference (``--times``: only meaningful when every trial ran on an
equally loaded machine).

    python docs/results/summarize_arms.py docs/results/mr_adversarial/runs.jsonl --variant small \
        --metrics test_acc [test_robust_acc]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from trickbag.ablation.stats import paired


def t_interval(values: list[float]) -> tuple[float, float, float]:
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def table(records: list[dict], metrics: list[str], reference: str = "none", times: bool = False) -> str:
    arms: dict[str, dict[int, dict]] = {}
    for r in records:
        arms.setdefault(r["arm"], {})[r["seed"]] = r
    ref = arms.get(reference, {})
    head = ["arm", "n"]
    for m in metrics:
        head += [f"{m} (95% CI)", f"vs {reference} (95% CI, p)"]
    head += (["train time (s)", "x " + reference] if times else []) + ["stopped early"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    ref_time = sum(r["train_time"] for r in ref.values()) / len(ref) if ref else math.nan
    for arm, by_seed in arms.items():
        row = [f"`{arm}`", str(len(by_seed))]
        for m in metrics:
            values = {s: r["test"][m] for s, r in by_seed.items() if m in r["test"]}
            mean, lo, hi = t_interval(list(values.values()))
            row.append(f"{100 * mean:.2f} [{100 * lo:.2f}, {100 * hi:.2f}]")
            if arm == reference or not ref:
                row.append("")
            else:
                d = paired({s: r["test"][m] for s, r in ref.items()}, values)
                row.append(f"{100 * d.mean:+.2f} [{100 * d.ci_low:+.2f}, {100 * d.ci_high:+.2f}], p {d.p_value:.3f}")
        t = sum(r["train_time"] for r in by_seed.values()) / len(by_seed)
        if times:
            row += [f"{t:.0f}", f"{t / ref_time:.2f}" if ref else ""]
        row.append(str(sum(1 for r in by_seed.values() if r.get("stopped"))))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs")
    p.add_argument("--variant", default="")
    p.add_argument("--metrics", nargs="+", default=["test_acc"])
    p.add_argument("--reference", default="none")
    p.add_argument("--times", action="store_true",
                   help="add the mean training time per arm (only where every trial ran on an equally loaded machine; "
                        "benchmarks/adversarial_overhead.py measures overhead properly)")
    args = p.parse_args(argv)
    records = [json.loads(line) for line in Path(args.runs).read_text().splitlines() if line.strip()]
    records = [r for r in records if r["variant"] == args.variant]
    print(table(records, args.metrics, args.reference, args.times))
    loads = [r[k] for r in records for k in ("load_before", "load_after")]
    cpu = sum(r["cpu_time"] for r in records)
    wall = sum(r["wall_time"] for r in records)
    print(f"\n{len(records)} trials, {wall / 60:.0f} min wall and {cpu / 60:.0f} min CPU in all "
          f"({records[0]['threads']} thread each), load average {min(loads):.1f} to {max(loads):.1f} on the machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
