"""The multi-task report: accuracy per task, arm and training-set size, paired against
single-task models."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from trickbag._atomic import save_figure
from trickbag.ablation.stats import paired
from trickbag.report import Page
from trickbag.report.plots import COLORS, pyplot

__all__ = ["render", "summary_rows"]


def summary_rows(results: dict) -> list[dict]:
    """One row per (training-set size, arm): mean and sd of each task's test accuracy over seeds
    and its paired difference from the single-task arm."""
    trials = list(results["trials"].values())
    tasks = [results["main_task"], *results["tasks"]]
    rows = []
    for n in results["subsets"]:
        ref = {t["seed"]: t for t in trials if t["n"] == n and t["arm"] == "single-task"}
        for arm in results["arms"]:
            got = {t["seed"]: t for t in trials if t["n"] == n and t["arm"] == arm}
            if not got:
                continue
            row = {"n": n, "arm": arm, "seeds": len(got), "cpu_s": statistics.fmean(t["cpu_s"] for t in got.values())}
            for task in tasks:
                vals = [t["acc"][task] for t in got.values()]
                row[task] = (statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else float("nan"))
                if arm != "single-task" and ref:
                    row[f"{task}_vs_single"] = paired({s: t["acc"][task] for s, t in ref.items()},
                                                      {s: t["acc"][task] for s, t in got.items()})
            rows.append(row)
    return rows


def render(out: str | Path) -> list[Path]:
    out = Path(out)
    results = json.loads((out / "multitask.json").read_text())
    tasks = [results["main_task"], *results["tasks"]]
    rows = summary_rows(results)
    page = Page("Multi-task learning: single-task vs hard vs soft sharing")
    cfg = results["config"]
    page.paragraph(f"Data {cfg['data']['name']}, model {cfg['model']['name']}; tasks: {results['main_task']} (the data "
                   f"set's labels) and {', '.join(f'{n} (mapped from it: {m})' for n, m in results['tasks'].items())}. "
                   f"Training-set sizes {results['subsets']}"
                   + (f" of which only {results['main_labels']} keep their {results['main_task']} label"
                      if results.get("main_labels") else "")
                   + f", {results['seeds']} seeds each; soft-sharing coefficient "
                   f"{results['soft_coefficient']}. Test accuracy per task, mean and sd over seeds; differences are "
                   "paired over seeds (seed i: same initial trunk and data order in every arm) against separate "
                   "single-task models, with 95% intervals from scipy's paired t-test.")
    headers = ["train size", "arm"]
    for t in tasks:
        headers += [f"{t} acc", "sd", "vs single [95% CI]"]
    headers.append("CPU s")
    table = []
    for r in rows:
        line = [r["n"], r["arm"]]
        for t in tasks:
            m, sd = r[t]
            p = r.get(f"{t}_vs_single")
            line += [m, sd, f"{p.mean:+.4f} [{p.ci_low:+.4f}, {p.ci_high:+.4f}]" if p and p.ci_low == p.ci_low
                     else (f"{p.mean:+.4f}" if p else "")]
        line.append(r["cpu_s"])
        table.append(line)
    page.table(headers, table)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.8), dpi=110, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for i, arm in enumerate(results["arms"]):
            pts = [(r["n"], *r[task]) for r in rows if r["arm"] == arm]
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] if p[2] == p[2] else 0 for p in pts],
                            color=COLORS[i], marker="o", capsize=3, label=arm, linewidth=1.3)
        ax.set_xscale("log")
        ax.set_xlabel("training examples")
        ax.set_ylabel(f"test accuracy, {task}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "accuracy.png")  # atomically
    plt.close(fig)
    page.image("accuracy.png", "Test accuracy per task against training-set size (mean and sd over seeds)")
    prov = results["provenance"]
    trials = list(results["trials"].values())
    page.heading("Provenance")
    page.bullets([f"trickbag {prov['trickbag']}, git {prov['git']}, torch {prov['torch']}, {prov['hardware'].get('cpu')}",
                  f"wall time {sum(t['wall_s'] for t in trials) / 60:.1f} min, CPU time "
                  f"{sum(t['cpu_s'] for t in trials) / 60:.1f} min; 1-minute load average "
                  f"{min(t['load'] for t in trials):.1f} to {max(t['load'] for t in trials):.1f}"])
    page.code(json.dumps(results["config"], indent=1), "json")
    return page.write(out)
