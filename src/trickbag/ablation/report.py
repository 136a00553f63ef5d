"""The ablation report: a table with paired intervals and verdicts, plots, and provenance."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import yaml

from trickbag import _study
from trickbag._atomic import save_figure
from trickbag.ablation.stats import holm, paired, verdict
from trickbag.report import Page, fmt
from trickbag.report.plots import COLORS, pyplot

__all__ = ["render", "collect"]


def collect(out: str | Path) -> dict[str, Any]:
    """Trials of the ablation in ``out``, grouped by arm: values, curves and times per seed."""
    from trickbag.ablation.runner import load_spec

    meta, spec = load_spec(out)
    store = _study.open_storage(meta["storage"])
    planned = _study.PlannedStudy(store, meta["study"], spec.direction, spec.slots(), spec.plan_id())
    planned.open(create=False)  # a report reads; it never creates a study or queues trials
    arms = [{"arm": a, "values": {}, "history": {}, "train_time": {}, "failures": []} for a in spec.arms]
    for t in planned.completed():
        a, s = t.user_attrs["arm"], t.user_attrs["seed"]
        arms[a]["values"][s] = float(t.value)
        arms[a]["history"][s] = t.user_attrs.get("history", [])
        arms[a]["train_time"][s] = float(t.user_attrs.get("train_time", math.nan))
    S = planned.optuna.trial.TrialState
    done = {t.user_attrs.get("slot") for t in planned.completed()}
    for t in planned._trials((S.FAIL,)):
        if t.user_attrs.get("slot") in done or "discarded" in t.user_attrs:
            continue
        reason = str(t.user_attrs.get("failure", "failed")).strip().splitlines()[-1]
        arms[t.user_attrs["arm"]]["failures"].append(f"seed {t.user_attrs['seed']}: {reason}")
    study = planned.study
    workers = {k.split(":", 1)[1]: v for k, v in study.user_attrs.items() if k.startswith("workers:")}
    return {"meta": meta, "spec": spec, "arms": arms, "counts": planned.counts(), "workers": workers,
            "started": study.user_attrs.get("started"), "finished": study.user_attrs.get("finished")}


def _rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    spec = data["spec"]
    maximize = spec.direction == "maximize"
    ref = next(a for a in data["arms"] if a["arm"].reference)
    rows = []
    for entry in data["arms"]:
        arm, values = entry["arm"], entry["values"]
        vals = list(values.values())
        row: dict[str, Any] = {
            "label": arm.label,
            "reference": arm.reference,
            "n": len(vals),
            "mean": statistics.fmean(vals) if vals else math.nan,
            "std": statistics.stdev(vals) if len(vals) > 1 else math.nan,
            "time": statistics.fmean(entry["train_time"].values()) if entry["train_time"] else math.nan,
            "failures": entry["failures"],
            "effect_of": arm.effect_of,
        }
        if not arm.reference:
            # effect of the trick: arm - reference in add-one and grid, reference - arm when left out
            first, second = (ref["values"], values) if arm.sign > 0 else (values, ref["values"])
            row["paired"] = paired(first, second)
            common = sorted(set(ref["train_time"]) & set(entry["train_time"]))
            ratios = [entry["train_time"][s] / ref["train_time"][s] - 1 for s in common if ref["train_time"][s] > 0]
            row["overhead"] = statistics.fmean(ratios) if ratios else math.nan
        rows.append(row)
    tested = [r for r in rows if "paired" in r]
    for r, p in zip(tested, holm([r["paired"].p_value for r in tested])):
        r["p_holm"] = p
        r["verdict"] = verdict(r["paired"], p, maximize=maximize)
    return rows


def _plot_differences(rows, spec, path: Path) -> None:
    plt = pyplot()
    tested = [r for r in rows if "paired" in r]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(tested) + 1.6), dpi=110)
    for i, r in enumerate(tested):
        p = r["paired"]
        color = {"helps": "#1a7f37", "hurts": "#d1242f"}.get(r.get("verdict"), "#6e7781")
        ax.barh(i, p.mean, color=color, alpha=0.75, height=0.6)
        if p.ci_low == p.ci_low:
            ax.errorbar(p.mean, i, xerr=[[p.mean - p.ci_low], [p.ci_high - p.mean]], fmt="none", ecolor="black",
                        capsize=4, linewidth=1.2)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(tested)), [r["effect_of"] or r["label"] for r in tested], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"effect on {spec.metric} (paired difference, 95% CI)")
    ax.set_title(f"{spec.mode}: green helps, red hurts, grey no evidence (Holm-adjusted p < 0.05)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _plot_curves(data, key: str, path: Path, ylabel: str) -> bool:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    drawn = False
    for i, entry in enumerate(data["arms"]):
        curves = [[h.get(key) for h in hist] for hist in entry["history"].values() if hist]
        curves = [c for c in curves if c and all(v is not None for v in c)]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        epochs = list(range(1, length + 1))
        cols = [[c[e] for c in curves] for e in range(length)]
        mean = [statistics.fmean(c) for c in cols]
        lo, hi = [min(c) for c in cols], [max(c) for c in cols]
        color = COLORS[i % len(COLORS)]
        ax.plot(epochs, mean, color=color, label=entry["arm"].label, linewidth=1.6 if entry["arm"].reference else 1.1,
                linestyle="-" if entry["arm"].reference or i < len(COLORS) else "--")
        if len(curves) > 1:
            ax.fill_between(epochs, lo, hi, color=color, alpha=0.12)
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("mean over seeds; band: min to max", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return True


def _where(url: str) -> str:
    """Storage without credentials or local paths: the file name of a SQLite database."""
    if url.startswith("sqlite"):
        return f"{Path(url.split(':///', 1)[-1]).name} (SQLite, in this folder)"
    return url.split("@")[-1]


def render(out: str | Path) -> dict[str, Any]:
    """Write ``report.md``, ``report.html`` and the PNGs of the ablation in ``out``; return the
    table rows and the report paths."""
    out = Path(out)
    data = collect(out)
    spec, counts, meta = data["spec"], data["counts"], data["meta"]
    rows = _rows(data)
    base = spec.base
    page = Page(f"Ablation: {spec.metric} on {base.data.name} with {base.model['name']}")
    wall = (data["finished"] - data["started"]) if data["finished"] and data["started"] else None
    summary = (f"{spec.mode} over {len(spec.tricks)} tricks: {len(spec.arms)} arms x {spec.seeds} seeds; "
               f"{counts['done']} of {counts['planned']} trials complete.")
    if wall is not None:
        summary += f" Wall time from first to last trial: {wall / 60:.1f} min."
    page.paragraph(summary)
    if counts["done"] < counts["planned"]:
        page.warning(f"{counts['planned'] - counts['done']} trials have not finished; rerun the same command to continue.")
    page.heading("Results")
    ref_label = next(r["label"] for r in rows if r["reference"])
    headers = ["arm", "n", spec.metric, "sd", f"effect vs {ref_label}", "95% CI", "p", "p (Holm)", "verdict",
               "train time (s)", "time overhead"]
    table, classes = [], []
    for r in rows:
        p = r.get("paired")
        ci = f"[{fmt(p.ci_low)}, {fmt(p.ci_high)}]" if p and p.ci_low == p.ci_low else ""
        overhead = r.get("overhead")
        table.append([r["label"], r["n"], r["mean"], r["std"], p.mean if p else "", ci, p.p_value if p else "",
                      r.get("p_holm", ""), r.get("verdict", "reference"), r["time"],
                      f"{100 * overhead:+.0f}%" if overhead is not None and overhead == overhead else ""])
        classes.append(r.get("verdict", "") if r.get("verdict") in ("helps", "hurts") else "")
    page.table(headers, table, classes)
    sign_note = ("In leave-one-out mode the effect of a trick is (all tricks) minus (all but that trick), so a "
                 "positive effect means the trick helps. " if spec.mode == "leave-one-out" else "")
    page.paragraph(
        f"{sign_note}Effects are paired differences over seeds: seed i gives every arm the same initial weights and "
        f"data order, so each difference is measured on one seed. Intervals and p-values come from scipy's paired "
        f"t-test (scipy.stats.ttest_rel); the verdict uses Holm-Bonferroni-adjusted p-values across the "
        f"{len(rows) - 1} comparisons at alpha 0.05, so 'no evidence' means this number of seeds cannot tell the "
        f"arm from {ref_label}, not that the trick does nothing. The metric is the final epoch's {spec.metric} on the "
        f"validation split ({'higher' if spec.direction == 'maximize' else 'lower'} is better); the test split is not used."
    )
    shared = {host: n for host, n in data["workers"].items() if n > 1}
    if shared:
        page.paragraph(
            "Train times were measured with several trials running at once on a machine "
            f"({', '.join(f'{n} on {h}' for h, n in shared.items())}), sharing its device: they show relative cost, "
            "not the time of a trial alone, and the overhead column compares arms under the same sharing "
            "(trials run seed by seed across arms)."
        )
    failures = [f"{r['label']}: {f}" for r in rows for f in r["failures"]]
    if failures:
        page.heading("Failed trials")
        page.bullets(failures)
    page.heading("Plots")
    _plot_differences(rows, spec, out / "effects.png")
    page.image("effects.png", "Effect of each trick with its 95% confidence interval")
    if _plot_curves(data, spec.metric, out / "curves_metric.png", f"validation {spec.metric}"):
        page.image("curves_metric.png", f"Validation {spec.metric} per epoch, per arm")
    if _plot_curves(data, "train_loss", out / "curves_train_loss.png", "training loss"):
        page.image("curves_train_loss.png", "Training loss per epoch, per arm (the data loss, before flooding and penalties)")
    page.heading("Provenance")
    prov = meta.get("provenance", {})
    page.bullets([
        f"trickbag {prov.get('trickbag')}, git {prov.get('git')}, torch {prov.get('torch')}",
        f"hardware: {prov.get('hardware')}",
        f"seeds: {', '.join(str(base.train.seed + i) for i in range(spec.seeds))} (paired across arms)",
        f"study {meta['study']} in {_where(meta['storage'])}",
    ])
    page.paragraph("Arms (tricks added to the base config):")
    page.bullets([f"{a.label}: {', '.join(t.label() for t in a.tricks) or '(none)'}" for a in spec.arms])
    page.paragraph("Base config:")
    page.code(yaml.safe_dump(base.to_dict(), sort_keys=False), "yaml")
    paths = page.write(out)
    return {"rows": rows, "report": [str(p) for p in paths]}


def table_text(rows: list[dict[str, Any]], metric: str) -> str:
    """The results table as plain text for the terminal."""
    w = max([28] + [len(r["label"]) for r in rows])
    lines = [f"{'arm':<{w}} {'n':>2} {metric:>9} {'effect':>8} {'95% CI':>21} {'p(Holm)':>8}  verdict"]
    for r in rows:
        p = r.get("paired")
        if p is None:
            lines.append(f"{r['label']:<{w}} {r['n']:>2} {r['mean']:>9.4f} {'':>8} {'':>21} {'':>8}  reference")
            continue
        ci = f"[{p.ci_low:+.4f}, {p.ci_high:+.4f}]" if p.ci_low == p.ci_low else ""
        lines.append(f"{r['label']:<{w}} {r['n']:>2} {r['mean']:>9.4f} {p.mean:>+8.4f} {ci:>21} "
                     f"{r.get('p_holm', float('nan')):>8.3f}  {r.get('verdict', '')}")
    return "\n".join(lines)
