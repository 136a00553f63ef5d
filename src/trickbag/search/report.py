"""The search report: best configuration, top trials, per-parameter plots, importances, warnings."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import yaml

from trickbag import _study
from trickbag._atomic import save_figure, write_json
from trickbag.report import Page
from trickbag.report.page import fmt
from trickbag.report.plots import plain_log_ticks, pyplot
from trickbag.search.runner import border_warnings, noise_warning, winners_curse_warning
from trickbag.search.space import Param

__all__ = ["render"]


def _study_trials(store, name: str):
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=store).get_trials(deepcopy=False)
    except KeyError:
        return []


def render(out: str | Path) -> dict[str, Any]:
    out = Path(out)
    meta = json.loads((out / "search.json").read_text())
    opts = meta["options"]
    metric, maximize = opts["metric"], opts["direction"] == "maximize"
    params = [Param.from_dict(d) for d in meta["space"]]
    fine_space = [Param.from_dict(d) for d in meta.get("fine_space", [])]
    store = _study.open_storage(_study.existing_storage(meta["storage"], out))  # never a new, empty database
    stages = {s: _study_trials(store, f"{meta['study']}-{s}") for s in ("coarse", "fine", "final")}
    done = {s: [t for t in ts if t.state.name in ("COMPLETE", "PRUNED")] for s, ts in stages.items()}
    selectable = [t for s in ("fine", "coarse") for t in done[s] if t.state.name == "COMPLETE" and t.value is not None]
    last = "fine" if done["fine"] else "coarse"
    # every stage that trained the full budget competes for the best (coarse too when as long)
    full = [last] + (["coarse"] if last == "fine" and opts["coarse_epochs"] >= opts["fine_epochs"] else [])
    ranked = sorted([(s, t) for s in full for t in done[s] if t.state.name == "COMPLETE" and t.value is not None],
                    key=lambda st: -st[1].value if maximize else st[1].value)
    stage_of = {id(t): s for s, t in ranked}
    ranked = [t for _, t in ranked]
    page = Page(f"Search: {metric} of {meta['base']['model']['name']} on {meta['base']['data']['name']}")
    page.paragraph(f"{opts['sampler']} sampling, stages {', '.join(opts['stages'])}; {len(done['coarse'])} coarse trials "
                   f"({opts['coarse_epochs']:g} epoch(s) each), {len(done['fine'])} fine trials ({opts['fine_epochs']:g} "
                   f"epochs); pruner {opts['pruner']}. Selection uses the validation split only.")
    warnings: list[str] = list(meta.get("advice", []))
    best = ranked[0] if ranked else None
    final_vals, test = [], []
    for t in done["final"]:
        if t.value is not None and t.state.name == "COMPLETE":
            final_vals.append(t.value)
            tv = (t.user_attrs.get("test") or {}).get(metric.replace("val_", "test_"))
            if tv is not None:
                test.append(tv)
    if best is not None:
        warnings += border_warnings(params, best.user_attrs["values"])
        noise = noise_warning([t.value for t in ranked[:3]], final_vals, metric)
        if noise:
            warnings.append(noise)
        curse = winners_curse_warning(best.value, final_vals, metric, maximize=maximize)
        if curse:
            warnings.append(curse)
    page.heading("Best configuration")
    if best is not None:
        page.table(["parameter", "value", "coarse range", "fine range"],
                   [[p.key, best.user_attrs["values"].get(p.key), p.describe(),
                     next((f.describe() for f in fine_space if f.key == p.key), "")] for p in params])
        line = f"{metric} {fmt(best.value)} (trial {best.number} of the {stage_of[id(best)]} stage)."
        if final_vals:
            line += (f" Retrained with {len(final_vals)} seeds: {metric} {fmt(statistics.fmean(final_vals))}"
                     f" (sd {fmt(statistics.stdev(final_vals) if len(final_vals) > 1 else 0.0)}).")
        if test:
            line += (f" Test split, reported once for this configuration: {metric.replace('val_', 'test_')} "
                     f"{fmt(statistics.fmean(test))} over {len(test)} seeds.")
        page.paragraph(line)
        page.paragraph("best.yaml holds this configuration; `trickbag train --config best.yaml` runs it as it is.")
    page.heading("Warnings")
    if warnings:
        for w in warnings:
            page.warning(w)
    else:
        page.paragraph("None: the best values lie inside their ranges, the top trials differ by more than seed noise"
                       + (", and the retrained mean is within two seed sds of the search's best." if final_vals
                          else " (no retrained seeds to judge the search's best by)."))
    page.heading("Top trials")
    rows = []
    for t in ranked[:10]:
        v = t.user_attrs.get("values", {})
        rows.append([stage_of[id(t)], t.number, t.value] + [v.get(p.key) for p in params])
    page.table(["stage", "trial", metric] + [p.key for p in params], rows)
    pruned = sum(t.state.name == "PRUNED" for s in ("coarse", "fine") for t in done[s])
    failed = [t for s in ("coarse", "fine") for t in stages[s] if t.state.name == "FAIL" and "discarded" not in t.user_attrs]
    page.paragraph(f"{pruned} trials were pruned early (their partial curves are kept in the study); {len(failed)} failed.")
    page.heading("Metric against each parameter")
    for p in params:
        name = f"param_{p.key.replace('.', '_')}.png"
        if _param_plot(p, done, metric, best, out / name):
            page.image(name, f"{metric} against {p.key} ({'log' if p.log else 'linear'} axis); coarse grey, fine blue, "
                             "pruned as crosses, the best as a star")
    imp = _importances(store, meta["study"], last)
    if imp:
        page.heading("Parameter importances")
        page.table(["parameter", "importance"], [[k, v] for k, v in imp.items()])
        n = sum(t.state.name == "COMPLETE" for t in done[last])
        page.paragraph(f"Optuna's fANOVA-based estimate over the {n} completed trials of the {last} stage: how much "
                       "of the metric's variance each parameter explains (few trials make it a rough guide).")
    page.heading("Provenance")
    prov = meta.get("provenance", {})
    page.bullets([f"trickbag {prov.get('trickbag')}, git {prov.get('git')}, torch {prov.get('torch')}",
                  f"hardware: {prov.get('hardware')}", f"study {meta['study']}"])
    page.code(yaml.safe_dump(meta["base"], sort_keys=False), "yaml")
    paths = page.write(out)
    write_json(out / "warnings.json", warnings)
    retrained = {"n": len(final_vals), "mean": statistics.fmean(final_vals),
                 "sd": statistics.stdev(final_vals) if len(final_vals) > 1 else 0.0} if final_vals else None
    tested = {"n": len(test), "mean": statistics.fmean(test), "metric": metric.replace("val_", "test_")} if test else None
    return {"report": [str(p) for p in paths], "warnings": warnings, "retrained": retrained, "test": tested,
            "best_value": best.value if best else None, "selectable": len(selectable)}


def _param_plot(p: Param, done, metric: str, best, path: Path) -> bool:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 3.6), dpi=110)
    drawn = False
    for stage, color in (("coarse", "#7f7f7f"), ("fine", "#1f77b4")):
        for state, marker in (("COMPLETE", "o"), ("PRUNED", "x")):
            pts = [(t.user_attrs["values"].get(p.key), t.value) for t in done[stage]
                   if t.state.name == state and t.value is not None and "values" in t.user_attrs]
            pts = [(x, y) for x, y in pts if x is not None and y is not None and math.isfinite(y)]
            if not pts:
                continue
            xs = [str(x) for x, _ in pts] if p.kind == "choice" else [x for x, _ in pts]
            ax.scatter(xs, [y for _, y in pts], c=color, marker=marker, s=22, alpha=0.8,
                       label=f"{stage}{' (pruned)' if state == 'PRUNED' else ''}")
            drawn = True
    if best is not None and p.key in best.user_attrs.get("values", {}):
        x = best.user_attrs["values"][p.key]
        ax.scatter([str(x) if p.kind == "choice" else x], [best.value], marker="*", s=160, c="#d62728", label="best",
                   zorder=5)
    if not drawn:
        plt.close(fig)
        return False
    if p.log:
        ax.set_xscale("log")
        plain_log_ticks(ax, "x")
    ys = [t.value for s in ("coarse", "fine") for t in done[s] if t.value is not None and math.isfinite(t.value)]
    if ys and min(ys) > 0 and max(ys) / min(ys) > 100:  # diverged trials would flatten the rest
        ax.set_yscale("log")
        plain_log_ticks(ax, "y")
    if p.kind != "choice":
        ax.axvspan(p.low, p.low * (p.high / p.low) ** 0.1 if p.log else p.low + 0.1 * (p.high - p.low), color="#ff7f0e", alpha=0.08)
        ax.axvspan(p.high / (p.high / p.low) ** 0.1 if p.log else p.high - 0.1 * (p.high - p.low), p.high, color="#ff7f0e", alpha=0.08)
    ax.set_xlabel(p.key + (" (log scale)" if p.log else ""))
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title("orange bands: the outer tenths of the coarse range", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return True


def _importances(store, name: str, stage: str) -> dict[str, float]:
    import optuna

    try:
        study = optuna.load_study(study_name=f"{name}-{stage}", storage=store)
        return {k: round(v, 4) for k, v in optuna.importance.get_param_importances(study).items()}
    except Exception:  # too few trials, or a single value per parameter
        return {}
