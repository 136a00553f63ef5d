"""The atlas report: every (task, trick) cell as a paired comparison with its verdict, each trick
pooled across tasks by a random-effects meta-analysis (:mod:`trickbag.atlas.meta`), a heat map of
tricks x tasks, a forest plot per trick, a table sorted by the pooled effect with the effect each
trick's paper claims beside it, and ``results.json`` with every number (and the per-seed values the
report was made from, so :func:`render_results` redraws it without the trial storage)."""

from __future__ import annotations

import json
import math
import re
import statistics
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trickbag import catalog
from trickbag._atomic import save_figure, write_text
from trickbag._optional import available
from trickbag.ablation.stats import bonferroni, interval_verdict, paired
from trickbag.atlas.meta import (cell_effect, check_options, normalise_scale, random_effects, scale_description,
                                 scale_factor)
from trickbag.report import Page, fmt

__all__ = ["claim_of", "heatmap_data", "load_results", "reading", "render_results", "summary_table", "write_report"]

STATUSES = ("ok", "n/a", "failed")
FAMILIES = ("task", "atlas")
#: Units that make a metric "accuracy-type": its error has a ceiling (1 or 100), so the relative
#: error reduction is defined.
UNIT_TOPS = {"fraction": 1.0, "percent": 100.0}
#: The verdict marks of the heat map (no plus or minus signs: the numbers beside them carry signs).
MARKS = {"helps": "\u25b2", "hurts": "\u25bc", "undecided": "\u00b7"}
#: Atlas labels of tricks whose method card has another name.
ALIASES = {"warmup": "linear_warmup", "cosine_restarts": "warmup_cosine_restarts", "mish": "activations",
           "swish": "activations", "silu": "activations", "gelu": "activations", "gc": "gradient_centralization",
           "gradient_centralisation": "gradient_centralization", "focal": "focal_loss",
           "class_balanced_loss": "class_balanced", "clipping": "gradient_clipping", "lookahead_radam": "lookahead"}


# ---- claims from the method cards ----------------------------------------------------------------

def catalog_name(trick: str, card: str | None = None) -> str | None:
    """The catalog entry an atlas trick label stands for: ``card`` when given (a suite's
    ``card:``), else the label itself, its head (``"mixup:alpha=0.2"`` -> ``"mixup"``) or a known
    alias (``"mish"`` -> ``"activations"``); ``None`` when none is a catalog name."""
    names = set(catalog.names())
    for candidate in ([card] if card else []) + [trick, re.split(r"[:(\[{=@ ,]", trick, maxsplit=1)[0]]:
        candidate = candidate.strip().lower().replace("-", "_")
        candidate = ALIASES.get(candidate, candidate)
        if candidate in names:
            return candidate
    return None


def claim_of(trick: str, card: str | None = None) -> str | None:
    """The ``Claimed:`` line of the trick's method card (what its paper reports, and where), or
    ``None`` when the card has none.

    Example:
        >>> "CIFAR" in claim_of("cutout")
        True
    """
    name = catalog_name(trick, card)
    if name is None:
        return None
    try:
        text = catalog.get(name).card.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    m = re.search(r"^\**Claimed:\**\s*(.+?)\s*$", text, flags=re.MULTILINE)
    return m.group(1).strip() if m else None


# ---- input ---------------------------------------------------------------------------------------

def _seed_map(values: Mapping[Any, Any] | None, what: str) -> dict[int, float]:
    out = {}
    for s, v in (values or {}).items():
        try:
            seed = int(s)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: seed keys must be integers (or their strings), got {s!r}") from None
        if v is None:
            continue
        out[seed] = float(v)
    return out


def _clean_cells(cells: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    clean, seen = [], set()
    for i, c in enumerate(cells):
        where = f"cell {i} ({c.get('task')!r}, {c.get('trick')!r})"
        for key in ("task", "trick", "metric", "direction", "status"):
            if not isinstance(c.get(key), str) or not c.get(key):
                raise ValueError(f"{where}: {key!r} must be a non-empty string, got {c.get(key)!r}")
        if c["status"] not in STATUSES:
            raise ValueError(f"{where}: status must be one of {STATUSES}, got {c['status']!r}")
        if c["direction"] not in ("maximize", "minimize"):
            raise ValueError(f"{where}: direction must be 'maximize' or 'minimize', got {c['direction']!r}")
        if (c["task"], c["trick"]) in seen:
            raise ValueError(f"{where}: a second cell for the same task and trick")
        seen.add((c["task"], c["trick"]))
        failed = sorted(int(s) for s in c.get("failed_seeds") or [])
        treated = {s: v for s, v in _seed_map(c.get("treated"), where).items() if s not in failed}
        sd = c.get("baseline_sd")
        clean.append({"task": c["task"], "trick": c["trick"], "metric": c["metric"], "direction": c["direction"],
                      "status": c["status"], "seeds": sorted(int(s) for s in c.get("seeds") or []),
                      "baseline": _seed_map(c.get("baseline"), where), "treated": treated, "failed_seeds": failed,
                      "baseline_sd": None if sd is None or sd != sd else float(sd),
                      "params": dict(c.get("params") or {}),
                      "reason": str(c["reason"]) if c.get("reason") else None})
    return clean


def _tasks_of(cells: list[dict[str, Any]], metric_units: Mapping[str, str] | None) -> dict[str, dict[str, Any]]:
    tasks: dict[str, dict[str, Any]] = {}
    for c in cells:
        t = tasks.setdefault(c["task"], {"metric": c["metric"], "direction": c["direction"], "baseline": {}})
        if (t["metric"], t["direction"]) != (c["metric"], c["direction"]):
            raise ValueError(f"task {c['task']!r}: its cells disagree on the metric: {t['metric']} "
                             f"({t['direction']}) and {c['metric']} ({c['direction']})")
        t["baseline"].update(c["baseline"])
    units = dict(metric_units or {})
    for name, t in tasks.items():
        vals = list(t["baseline"].values())
        t["n_baseline"] = len(vals)
        t["baseline_mean"] = statistics.fmean(vals) if vals else math.nan
        t["baseline_sd"] = statistics.stdev(vals) if len(vals) > 1 else math.nan
        unit = units.get(name, units.get(t["metric"]))  # by task, else by metric
        if unit is None:  # not stated: a metric to maximise whose values all lie in [0, 1] is a fraction
            pool = vals + [v for c in cells if c["task"] == name for v in c["treated"].values()]
            unit = "fraction" if pool and all(0.0 <= v <= 1.0 for v in pool) else "unknown"
            t["units_inferred"] = True
        else:
            t["units_inferred"] = False
        t["units"] = unit
    return tasks


def _choose_scale(scale: str, tasks: dict[str, dict[str, Any]]) -> str:
    metrics = {(t["metric"], t["units"]) for t in tasks.values()}
    accuracy_type = all(t["units"] in UNIT_TOPS for t in tasks.values())
    if scale == "auto":
        return "rer" if accuracy_type else "standardised"
    scale = normalise_scale(scale)
    if scale == "raw" and len(metrics) > 1:
        raise ValueError(f"scale 'raw' pools effects in the metric's units, but the tasks use several metrics "
                         f"{sorted(metrics)}; use 'rer' (accuracy-type metrics) or 'standardised'")
    if scale == "rer" and not accuracy_type:
        bad = sorted(n for n, t in tasks.items() if t["units"] not in UNIT_TOPS)
        raise ValueError(f"scale 'rer' needs accuracy-type metrics (units {sorted(UNIT_TOPS)} in metric_units); "
                         f"tasks {bad} have none; use 'standardised'")
    return scale


# ---- statistics ----------------------------------------------------------------------------------

def _finite(x: Any) -> Any:
    """NaN and infinities as ``None`` (JSON has no NaN), recursively."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, np.generic):
        return _finite(x.item())
    return x


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def _cell_stats(cells, tasks, *, scale: str, alpha: float, family: str) -> None:
    """Fill each ok cell with its paired statistics (metric units) and its effect on the common scale."""
    fam_key = (lambda c: c["task"]) if family == "task" else (lambda c: "atlas")
    first = {}
    for c in cells:
        if c["status"] != "ok":
            continue
        first[id(c)] = paired(c["baseline"], c["treated"])
    families: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        if c["status"] == "ok" and first[id(c)].n >= 2:
            families.setdefault(fam_key(c), []).append(c)
    for members in families.values():
        adjusted = bonferroni([first[id(c)].p_value for c in members])
        for c, p_adj in zip(members, adjusted):
            c["m"], c["p_adj"] = len(members), p_adj
    for c in cells:
        c.update(n=0, effect=None, low=None, high=None, p=None, p_adj=c.get("p_adj"), m=c.get("m"), sd=None,
                 verdict=None, verdict_text=None, treated_mean=None, scaled=None, scaled_var=None, scaled_low=None,
                 scaled_high=None)
        if c["status"] != "ok":
            c["verdict"] = c["status"]
            continue
        raw = first[id(c)]
        task = tasks[c["task"]]
        maximize = c["direction"] == "maximize"
        c.update(n=raw.n, effect=raw.mean, p=raw.p_value, sd=raw.std,
                 treated_mean=statistics.fmean(c["treated"].values()) if c["treated"] else None)
        if raw.n >= 2:
            adj = paired(c["baseline"], c["treated"], confidence=1 - alpha / c["m"])
            c.update(low=adj.ci_low, high=adj.ci_high)
        text = interval_verdict(raw.n, _num(c["low"]), _num(c["high"]), maximize=maximize)
        c["verdict_text"] = text
        c["verdict"] = text if text in ("helps", "hurts") else "undecided"
        how = dict(direction=c["direction"], scale=scale, top=UNIT_TOPS.get(task["units"], 1.0),
                   baseline_sd=c["baseline_sd"] if c["baseline_sd"] is not None else task["baseline_sd"])
        e, var, n = cell_effect(c["baseline"], c["treated"], **how)
        c.update(scaled=e, scaled_var=var)
        f = scale_factor(c["baseline"], c["treated"], **how)
        if c["low"] is not None and f == f and e == e:  # the verdict's interval, on the common scale
            c.update(scaled_low=min(f * c["low"], f * c["high"]), scaled_high=max(f * c["low"], f * c["high"]))


def _pool(cells, tricks, *, method: str, hksj: str, confidence: float,
          cards: Mapping[str, str | None]) -> list[dict[str, Any]]:
    pooled = []
    for trick in tricks:
        mine = [c for c in cells if c["trick"] == trick]
        ok = [c for c in mine if c["status"] == "ok" and c["scaled"] is not None and c["scaled"] == c["scaled"]
              and c["scaled_var"] is not None and c["scaled_var"] == c["scaled_var"]]
        r = random_effects([c["scaled"] for c in ok], [c["scaled_var"] for c in ok], method=method, hksj=hksj,
                           confidence=confidence, verdicts=[c["verdict"] for c in ok])
        pooled_ids = {id(c) for c in ok}
        row = {"trick": trick, **r.to_dict(), "tasks": [c["task"] for c in ok],
               "not_pooled": sorted(c["task"] for c in mine if c["status"] == "ok" and id(c) not in pooled_ids),
               "n/a": sorted(c["task"] for c in mine if c["status"] == "n/a"),
               "failed": sorted(c["task"] for c in mine if c["status"] == "failed"),
               "params": next((c["params"] for c in mine if c["params"]), {}),
               "catalog": catalog_name(trick, cards.get(trick)), "claimed": claim_of(trick, cards.get(trick))}
        pooled.append(row)
    # the table's order: pooled effect, best first; then tricks measured on one task (nothing to pool),
    # by their effect; then tricks measured nowhere, by name
    pooled.sort(key=lambda r: (0 if r["k"] >= 2 else 1 if r["k"] == 1 else 2,
                               -r["estimate"] if r["estimate"] == r["estimate"] else 0.0, r["trick"]))
    return pooled


# ---- the entry point ---------------------------------------------------------------------------------

def write_report(out_dir: str | Path, cells: Sequence[Mapping[str, Any]], *, suite_name: str,
                 metric_units: Mapping[str, str] | None = None, command: str | None = None,
                 wall_time_s: float | None = None, meta: Mapping[str, Any] | None = None, scale: str = "auto",
                 method: str = "reml", hksj: str = "modified", family: str = "task", alpha: float = 0.05,
                 confidence: float = 0.95) -> dict[str, Any]:
    """Write the atlas report into ``out_dir``: ``report.md``, ``report.html``, ``heatmap.png``,
    ``forest.png`` and ``results.json``; return the results (the dict ``results.json`` holds).

    Each ``ok`` cell is a paired comparison of the trick against its task's baseline over their
    common seeds (``trickbag.ablation.stats.paired``); its interval is simultaneous over the cells
    of its ``family`` (``"task"``: the tricks tested on that task, as in an ablation of that task;
    ``"atlas"``: every cell), by Bonferroni, and its verdict (helps / hurts / undecided) is read off
    that interval. Each trick is then pooled over the tasks with a random-effects meta-analysis on
    one common ``scale`` (:func:`trickbag.atlas.meta.cell_effect`).

    Args:
        out_dir: the folder (created if needed).
        cells: one dict per (task, trick): ``task``, ``trick``, ``metric``, ``direction``
            (``"maximize"``/``"minimize"``), ``status`` (``"ok"``, ``"n/a"``, ``"failed"``), ``seeds``,
            ``baseline`` and ``treated`` (``{seed: value}``, seed keys int or str), ``failed_seeds``,
            ``baseline_sd`` (``None``: the sd of the baseline values given) and ``params``.
        suite_name: the suite's name, for the title.
        metric_units: ``{metric or task name: unit}`` (a task's own entry first, else its
            metric's): ``"fraction"`` (ceiling 1) or ``"percent"`` (ceiling 100) make it
            accuracy-type; any other text (``"nats"``) is shown as its unit. Unstated: a metric
            whose values all lie in [0, 1] is taken as a fraction (the report says so).
        command: the command that made the atlas (shown with the report).
        wall_time_s: its wall time in seconds.
        meta: provenance (trickbag version, git revision, hardware, ...), shown and kept.
        scale: ``"auto"`` (relative error reduction when every task's metric is accuracy-type, else
            standardised), ``"rer"``, ``"standardised"`` or ``"raw"`` (one metric only).
        method: ``tau^2`` estimator, ``"reml"`` (default), ``"dl"`` or ``"pm"``.
        hksj: ``"modified"`` (default) or ``"standard"`` HKSJ interval.
        family: ``"task"`` (default) or ``"atlas"``: what the Bonferroni adjustment runs over.
        alpha: the error rate of each family's simultaneous intervals (default 0.05).
        confidence: level of the pooled and prediction intervals (default 0.95).
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    check_options(method=method, hksj=hksj, confidence=confidence)
    if not (isinstance(alpha, float) and 0 < alpha < 1):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    if not cells:
        raise ValueError("cells is empty: an atlas report needs at least one (task, trick) cell")
    inputs = _clean_cells(cells)
    tasks = _tasks_of(inputs, metric_units)
    chosen = _choose_scale(scale, tasks)
    work = [dict(c) for c in inputs]
    _cell_stats(work, tasks, scale=chosen, alpha=alpha, family=family)
    task_names = list(dict.fromkeys(c["task"] for c in work))
    tricks = list(dict.fromkeys(c["trick"] for c in work))
    about_tricks = (meta or {}).get("tricks") if isinstance((meta or {}).get("tricks"), Mapping) else {}
    cards = {k: v.get("card") for k, v in about_tricks.items() if isinstance(v, Mapping)}
    pooled = _pool(work, tricks, method=method, hksj=hksj, confidence=confidence, cards=cards)
    for c in work:  # JSON keys are strings: seeds as strings, in order
        for key in ("baseline", "treated"):
            c[key] = {str(s): v for s, v in sorted(c[key].items())}
    results = _finite({
        "suite": suite_name,
        "settings": {"scale": chosen, "scale_requested": scale, "method": method, "hksj": hksj, "family": family,
                     "alpha": alpha, "confidence": confidence,
                     "metric_units": dict(metric_units) if metric_units is not None else None},
        "scale_description": scale_description(chosen, metrics=[t["metric"] for t in tasks.values()]),
        "tasks": [{"task": n, **{k: v for k, v in tasks[n].items() if k != "baseline"}} for n in task_names],
        "tricks": [r["trick"] for r in pooled],
        "pooled": pooled,
        "cells": work,
        "command": command,
        "wall_time_s": wall_time_s,
        "meta": dict(meta or {}),
    })
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "results.json", json.dumps(results, indent=1, allow_nan=False) + "\n")
    _render(results, out)
    return results


def load_results(path: str | Path) -> dict[str, Any]:
    """A saved ``results.json``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def render_results(folder: str | Path) -> dict[str, Any]:
    """Recompute and redraw the report of ``folder`` from its ``results.json`` alone (no trial
    storage), with the settings it was made with; returns the results."""
    folder = Path(folder)
    r = load_results(folder / "results.json")
    s = r["settings"]
    inputs = [{k: c[k] for k in ("task", "trick", "metric", "direction", "status", "seeds", "baseline", "treated",
                                 "failed_seeds", "baseline_sd", "params", "reason")} for c in r["cells"]]
    return write_report(folder, inputs, suite_name=r["suite"], metric_units=s["metric_units"], command=r["command"],
                        wall_time_s=r["wall_time_s"], meta=r["meta"], scale=s["scale_requested"], method=s["method"],
                        hksj=s["hksj"], family=s["family"], alpha=s["alpha"], confidence=s["confidence"])


# ---- text -------------------------------------------------------------------------------------------

def _fmt_scaled(x: Any, scale: str, *, sign: bool = True) -> str:
    if x is None or x != x:
        return ""
    digits = {"rer": 3, "standardised": 2}.get(scale)
    if (digits is not None and round(x, digits) == 0) or abs(x) < 1e-12:
        x = 0.0  # no "-0.0%"
    if scale == "rer":
        return f"{100 * x:+.1f}%" if sign else f"{100 * x:.1f}%"
    if scale == "standardised":
        return f"{x:+.2f} sd" if sign else f"{x:.2f} sd"
    if x == 0:
        return "0"
    return f"{x:+.4g}" if sign else f"{x:.4g}"


def _interval(low: Any, high: Any, scale: str) -> str:
    if low is None or high is None:
        return ""
    return f"[{_fmt_scaled(low, scale)}, {_fmt_scaled(high, scale)}]"


def reading(r: Mapping[str, Any]) -> str:
    """What a pooled row says, in words: from its confidence interval (on average over tasks like
    these) and its prediction interval (on a new task)."""
    if not r["k"]:
        return "too few seeds to pool (2+ per task)" if r.get("not_pooled") else "not measured"
    if r["k"] == 1:
        return "one task: not pooled"
    low, high, pl, ph = r["ci_low"], r["ci_high"], r["pi_low"], r["pi_high"]
    if low is not None and low > 0:
        return "helps, on a new task too" if pl is not None and pl > 0 else "helps on average; a new task may differ"
    if high is not None and high < 0:
        return "hurts, on a new task too" if ph is not None and ph < 0 else "hurts on average; a new task may differ"
    return "no evidence either way on average"


def _counts(r: Mapping[str, Any]) -> str:
    return f"{r['helps']}/{r['hurts']}/{r['undecided']}"


def summary_table(results: Mapping[str, Any]) -> str:
    """The pooled table as Markdown (for a README kept in sync with ``results.json``)."""
    scale = results["settings"]["scale"]
    conf = int(round(100 * results["settings"]["confidence"]))
    lines = [f"| trick | tasks | pooled effect | {conf}% CI (HKSJ) | {conf}% PI (new task) | tau | I^2 | "
             "helps/hurts/undecided | reading |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results["pooled"]:
        i2 = "" if r["i2"] is None else f"{100 * r['i2']:.0f}%"
        lines.append(f"| {r['trick']} | {r['k']} | {_fmt_scaled(r['estimate'], scale)} | "
                     f"{_interval(r['ci_low'], r['ci_high'], scale)} | {_interval(r['pi_low'], r['pi_high'], scale)} | "
                     f"{_fmt_scaled(r['tau'], scale, sign=False)} | {i2} | {_counts(r)} | {reading(r)} |")
    return "\n".join(lines)


# ---- plots -------------------------------------------------------------------------------------------

def heatmap_data(results: Mapping[str, Any]) -> tuple[list[str], list[str], np.ndarray, list[list[str]]]:
    """Rows (tricks, in the table's order), columns (tasks), the effects on the common scale (NaN
    where there is none: n/a, failed, too few seeds) and the cells' verdicts (``""`` for n/a)."""
    tricks, tasks = list(results["tricks"]), [t["task"] for t in results["tasks"]]
    values = np.full((len(tricks), len(tasks)), np.nan)
    verdicts = [["" for _ in tasks] for _ in tricks]
    for c in results["cells"]:
        i, j = tricks.index(c["trick"]), tasks.index(c["task"])
        verdicts[i][j] = "" if c["status"] == "n/a" else c["verdict"]
        if c["status"] == "ok" and c["scaled"] is not None:
            values[i, j] = c["scaled"]
    return tricks, tasks, values, verdicts


def _limit(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    if not finite.size:
        return 1.0
    lim = float(np.quantile(finite, 0.95))  # a few extreme cells do not wash out the rest
    return lim if lim > 0 else float(finite.max()) or 1.0


def _percent_axis(axis) -> None:
    """At most six round ticks on a fraction axis, labelled as percentages (-15%, 2.5%, 0)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    axis.set_major_formatter(FuncFormatter(lambda x, _: "0" if abs(x) < 1e-12 else f"{100 * x:.6g}%"))


def _plot_heatmap(results: Mapping[str, Any], path: Path) -> None:
    from trickbag.report.plots import pyplot

    plt = pyplot()
    from matplotlib.colors import TwoSlopeNorm

    scale = results["settings"]["scale"]
    tricks, tasks, values, verdicts = heatmap_data(results)
    lim = _limit(values)
    fig_w = 2.6 + 1.25 * len(tasks)
    fig_h = 1.9 + 0.42 * len(tricks)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=110)
    cmap = plt.get_cmap("RdBu").with_extremes(bad="#f0f0f0")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=TwoSlopeNorm(0.0, -lim, lim), aspect="auto")
    for i in range(len(tricks)):
        for j in range(len(tasks)):
            v, verdict = values[i, j], verdicts[i][j]
            if verdict == "":
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=7.5, color="#8c959f")
                continue
            if verdict == "failed":
                ax.text(j, i, "failed", ha="center", va="center", fontsize=7.5, color="#d1242f")
                continue
            if v != v:
                ax.text(j, i, "too few seeds", ha="center", va="center", fontsize=6.5, color="#57606a")
                continue
            dark = abs(v) > 0.6 * lim
            mark = MARKS.get(verdict, "")
            decided = verdict in ("helps", "hurts")
            ax.text(j, i, f"{mark} {_fmt_scaled(float(v), scale)}", ha="center", va="center", fontsize=8,
                    color="white" if dark else "#1f2328", fontweight="bold" if decided else "normal")
    ax.set_xticks(range(len(tasks)), tasks, rotation=25, ha="right", fontsize=8.5)
    ax.set_yticks(range(len(tricks)), tricks, fontsize=8.5)
    ax.set_xticks(np.arange(-0.5, len(tasks)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(tricks)), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, extend="both")
    label = {"rer": "relative error reduction", "standardised": "effect / baseline seed sd",
             "raw": "improvement (metric units)"}[scale]
    bar.set_label(f"{label} (positive = better)", fontsize=8)
    if scale == "rer":
        _percent_axis(bar.ax.yaxis)
    bar.ax.tick_params(labelsize=7.5)
    family = "the tricks of its task" if results["settings"]["family"] == "task" else "every cell of the atlas"
    title = (f"Tricks (rows, best pooled first) x tasks. Mark and bold: the cell's verdict ({MARKS['helps']} helps, "
             f"{MARKS['hurts']} hurts, {MARKS['undecided']} undecided), from its paired interval, simultaneous over "
             f"{family} (Bonferroni). Grey: n/a.")
    ax.set_title(textwrap.fill(title, width=int(11 * fig_w)), fontsize=8.5, loc="left")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _plot_forest(results: Mapping[str, Any], path: Path) -> None:
    from trickbag.report.plots import pyplot

    plt = pyplot()
    from matplotlib.patches import Polygon

    scale = results["settings"]["scale"]
    conf = int(round(100 * results["settings"]["confidence"]))
    tasks = [t["task"] for t in results["tasks"]]
    pooled = results["pooled"]
    by = {(c["trick"], c["task"]): c for c in results["cells"]}
    cols = min(3, len(pooled))
    rows = math.ceil(len(pooled) / cols)
    panel_h = 0.32 * (len(tasks) + 2) + 0.9
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, panel_h * rows), dpi=110, squeeze=False)
    colors = {"helps": "#1a7f37", "hurts": "#d1242f", "undecided": "#57606a"}
    for idx, r in enumerate(pooled):
        ax = axes[idx // cols][idx % cols]
        ys = list(range(len(tasks)))
        for y, task in zip(ys, tasks):
            c = by.get((r["trick"], task))
            if c is None or c["status"] != "ok" or c["scaled"] is None:
                why = "n/a" if c is None else {"ok": "too few seeds"}.get(c["status"], c["status"])
                ax.text(0.5, y, why, fontsize=7, color="#8c959f", va="center", ha="center",
                        transform=ax.get_yaxis_transform())
                continue
            color = colors.get(c["verdict"], "#57606a")
            if c["scaled_low"] is not None:
                ax.plot([c["scaled_low"], c["scaled_high"]], [y, y], color=color, linewidth=1.4)
            ax.plot([c["scaled"]], [y], marker="s", color=color, markersize=4.5)
        y0 = len(tasks) + 0.6
        if r["estimate"] is not None and r["k"] >= 2 and r["ci_low"] is not None:
            if r["pi_low"] is not None:
                ax.plot([r["pi_low"], r["pi_high"]], [y0, y0], color="#0969da", linewidth=2.2, alpha=0.55,
                        solid_capstyle="butt", label=f"{conf}% prediction interval (new task)")
            ax.add_patch(Polygon([(r["ci_low"], y0), (r["estimate"], y0 - 0.38), (r["ci_high"], y0),
                                  (r["estimate"], y0 + 0.38)], closed=True, color="black", zorder=3,
                                 label=f"pooled, {conf}% CI (HKSJ)"))
        elif r["estimate"] is not None:
            ax.text(r["estimate"], y0, "one task: not pooled", fontsize=7, ha="center", va="center")
        ax.axvline(0.0, color="black", linewidth=0.7)
        ax.set_yticks(ys + [y0], tasks + ["pooled"], fontsize=7.5)
        ax.set_ylim(y0 + 0.8, -0.7)
        tau = "" if r["tau"] is None else f", tau {_fmt_scaled(r['tau'], scale, sign=False)}"
        i2 = "" if r["i2"] is None else f", I\u00b2 {100 * r['i2']:.0f}%"
        ax.set_title(f"{r['trick']} (k = {r['k']}{tau}{i2})", fontsize=8.5)
        ax.tick_params(axis="x", labelsize=7)
        if scale == "rer":
            _percent_axis(ax.xaxis)
        ax.grid(axis="x", alpha=0.3)
        xs = [v for v in (r["pi_low"], r["pi_high"], r["ci_low"], r["ci_high"]) if v is not None]
        xs += [v for task in tasks for c in [by.get((r["trick"], task))] if c is not None
               for v in (c.get("scaled_low"), c.get("scaled_high"), c.get("scaled")) if v is not None]
        if xs:
            lo, hi = min(xs + [0.0]), max(xs + [0.0])
            pad = 0.06 * (hi - lo or 1.0)
            ax.set_xlim(lo - pad, hi + pad)
    for j in range(len(pooled), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    label = {"rer": "relative error reduction", "standardised": "effect / baseline seed sd",
             "raw": "improvement (metric units)"}[scale]
    family = "its task's tricks" if results["settings"]["family"] == "task" else "the atlas's cells"
    fig.supxlabel(f"{label}, positive = better. Squares: each task's effect with its paired interval, simultaneous "
                  f"over {family} (Bonferroni): green helps, red hurts, grey undecided.\n"
                  f"Diamond: the pooled effect and its {conf}% CI (HKSJ); blue bar: the {conf}% prediction interval "
                  "for a new task", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


# ---- the page -----------------------------------------------------------------------------------------

def _plain(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def _about(entry: Any) -> str:
    return str(entry.get("about") or "") if isinstance(entry, Mapping) else ""


def _params_text(params: Mapping[str, Any]) -> str:
    """``{"mixup": {"alpha": 0.2}}`` -> ``mixup(alpha=0.2)``; flat ``{"alpha": 0.2}`` -> ``alpha=0.2``."""
    parts = []
    for k, v in params.items():
        if isinstance(v, Mapping):
            parts.append(f"{k}({', '.join(f'{a}={b}' for a, b in v.items())})")
        else:
            parts.append(f"{k}={_plain(v)}")
    return ", ".join(parts)


def _trick_line(r: Mapping[str, Any], cells, about: Any) -> str:
    """One trick: its catalog card, its parameters (per task where they differ), what the suite says."""
    mine = [c for c in cells if c["trick"] == r["trick"] and c["status"] != "n/a"]
    texts = {c["task"]: _params_text(c["params"]) for c in mine}
    distinct = sorted(set(texts.values()))
    if len(distinct) <= 1:
        params = distinct[0] if distinct else ""
    else:
        params = "; ".join(f"{task}: {text or '(defaults)'}" for task, text in texts.items())
    head = r["trick"] + (f" (card: {r['catalog']})" if r.get("catalog") and r["catalog"] != r["trick"] else "")
    rest = "; ".join(x for x in (params, _about(about)) if x)
    return f"{head}: {rest}" if rest else head

def _render(results: Mapping[str, Any], out: Path) -> list[Path]:
    s = results["settings"]
    scale, conf = s["scale"], int(round(100 * s["confidence"]))
    cells, pooled, tasks = results["cells"], results["pooled"], results["tasks"]
    page = Page(f"Trick atlas: {results['suite']}")
    counts = {st: sum(1 for c in cells if c["status"] == st) for st in STATUSES}
    summary = (f"{len(tasks)} tasks x {len(pooled)} tricks: {counts['ok']} cells measured, {counts['n/a']} not "
               f"applicable, {counts['failed']} failed.")
    if results.get("wall_time_s") is not None:
        summary += f" Wall time: {results['wall_time_s'] / 60:.1f} min."
    page.paragraph(summary)
    if results.get("command"):
        page.code(results["command"], "sh")
    metrics = sorted({t["metric"] for t in tasks})
    scale_text = f"Common scale: {results['scale_description']}."
    if len(metrics) > 1:
        scale_text += (f" The tasks use different metrics ({', '.join(metrics)}): they are pooled only on this scale, "
                       "never in their own units.")
    inferred = sorted({t["metric"] for t in tasks if t.get("units_inferred") and t["units"] in UNIT_TOPS})
    if inferred and scale == "rer":
        scale_text += (f" Units not stated for {', '.join(inferred)}: taken as fractions (ceiling 1) since every "
                       "value lies in [0, 1].")
    page.paragraph(scale_text)

    page.heading("Pooled across tasks")
    headers = ["trick", "tasks", "pooled effect", f"{conf}% CI (HKSJ)", f"{conf}% PI (new task)", "tau", "I^2",
               "helps/hurts/undecided", "reading", "n/a"]
    rows, classes = [], []
    for r in pooled:
        rows.append([r["trick"], r["k"], _fmt_scaled(r["estimate"], scale), _interval(r["ci_low"], r["ci_high"], scale),
                     _interval(r["pi_low"], r["pi_high"], scale) or ("needs 3+ tasks" if r["k"] > 1 else ""),
                     _fmt_scaled(r["tau"], scale, sign=False), "" if r["i2"] is None else f"{100 * r['i2']:.0f}%",
                     _counts(r), reading(r), ", ".join(r["n/a"])])
        low, high = r["ci_low"], r["ci_high"]
        classes.append("helps" if low is not None and low > 0 else "hurts" if high is not None and high < 0 else "")
    page.table(headers, rows, classes)
    method = {"reml": "restricted maximum likelihood (REML)", "dl": "DerSimonian-Laird",
              "pm": "Paule-Mandel"}[s["method"]]
    family = ("the tricks tested on that task (as an ablation of that task would)" if s["family"] == "task"
              else "every measured cell of the atlas")
    page.paragraph(
        f"Sorted by the pooled effect, best first. Each trick's per-task effects are pooled by a random-effects "
        f"meta-analysis: the between-task variance tau^2 by {method}, the pooled effect weighted by 1 / (within-task "
        f"variance + tau^2), and its {conf}% interval by Hartung-Knapp-Sidik-Jonkman (t with k - 1 df"
        + (", never narrower than the plain random-effects interval: max(1, q))" if s["hksj"] == "modified" else ")")
        + f". The prediction interval (Higgins, Thompson and Spiegelhalter 2009; t with k - 2 df on tau^2 + SE^2) is "
        "where the effect on a new task like these should fall: the answer to 'will it help on my data?'; it needs "
        "3+ tasks. tau is the sd of the trick's true effect across tasks; I^2 the share of the effects' spread that "
        "seed noise does not explain (Higgins and Thompson 2002). helps/hurts/undecided counts tasks by the cell's "
        f"own verdict: its paired t interval in the metric's units, simultaneous over {family} by Bonferroni at "
        f"alpha {s['alpha']:g}. Few tasks make wide intervals: with k tasks the pooled interval has k - 1 degrees of "
        "freedom.")
    claims = [r for r in pooled if r.get("claimed")]
    if claims:
        page.heading("What the papers claim, beside what we measured")
        page.table(["trick", "claimed (paper, setting)", "measured: pooled effect", f"{conf}% PI (new task)",
                    "helps/hurts/undecided"],
                   [[r["trick"], r["claimed"], _fmt_scaled(r["estimate"], scale),
                     _interval(r["pi_low"], r["pi_high"], scale), _counts(r)] for r in claims])
        page.paragraph("Claims are from each trick's method card (docs/tricks/), in the papers' settings and "
                       "units (often ImageNet or CIFAR at full scale); ours are CPU-scale tasks on the common scale "
                       "above. A difference says the setting matters, not that either number is wrong.")
    missing = [r["trick"] for r in pooled if not r.get("claimed")]
    if missing:
        page.paragraph(f"No claim on file for: {', '.join(missing)}.")
    page.heading("Plots")
    if available("matplotlib"):
        _plot_heatmap(results, out / "heatmap.png")
        page.image("heatmap.png", "Effect of each trick on each task on the common scale; mark: the cell's verdict; "
                                  "grey: not applicable")
        _plot_forest(results, out / "forest.png")
        page.image("forest.png", "Per trick: each task's effect with the interval its verdict is read off, the pooled "
                                 "effect (diamond) and the prediction interval for a new task (blue)")
    else:
        page.warning("matplotlib is not installed: no plots (pip install 'trickbag[plots]').")

    m = results.get("meta") or {}
    about_tasks = m.get("tasks") if isinstance(m.get("tasks"), Mapping) else {}
    about_tricks = m.get("tricks") if isinstance(m.get("tricks"), Mapping) else {}
    page.heading("Tasks")
    page.table(["task", "metric", "better", "units", "baseline seeds", "baseline mean", "baseline sd", "about"],
               [[t["task"], t["metric"], "higher" if t["direction"] == "maximize" else "lower",
                 t["units"] + (" (inferred)" if t.get("units_inferred") else ""), t["n_baseline"],
                 _num(t["baseline_mean"]), _num(t["baseline_sd"]), _about(about_tasks.get(t["task"]))]
                for t in tasks])
    page.heading("Every cell")
    for t in tasks:
        mine = [c for c in cells if c["task"] == t["task"]]
        page.paragraph(f"{t['task']} ({t['metric']}, {'higher' if t['direction'] == 'maximize' else 'lower'} is "
                       f"better; baseline {fmt(_num(t['baseline_mean']))}):")
        page.table(["trick", "n", t["metric"], "effect", "simultaneous 95% CI", "p (adjusted)", "verdict",
                    "common scale", "failed seeds"],
                   [[c["trick"], c["n"] if c["status"] == "ok" else "",
                     "" if c["treated_mean"] is None else c["treated_mean"],
                     "" if c["effect"] is None else c["effect"],
                     "" if c["low"] is None else f"[{fmt(c['low'])}, {fmt(c['high'])}]",
                     "" if c["p_adj"] is None else c["p_adj"],
                     c["verdict_text"] or (f"{c['status']}: {c['reason']}" if c.get("reason") else c["status"]),
                     _fmt_scaled(c["scaled"], scale),
                     ", ".join(map(str, c["failed_seeds"]))] for c in mine],
                   [c["verdict"] if c["verdict"] in ("helps", "hurts") else "" for c in mine])
    page.paragraph("effect: treated minus baseline in the metric's units, paired over the seeds both have (seed i "
                   "gives both the same initial weights and data order).")
    page.heading("Tricks")
    page.bullets([_trick_line(r, cells, about_tricks.get(r["trick"])) for r in pooled])
    page.heading("Provenance")
    lines = []
    for k, v in m.items():
        if k in ("tasks", "tricks"):
            continue
        if isinstance(v, Mapping):
            lines += [f"{k2}: {_plain(v2)}" for k2, v2 in v.items()]
        else:
            lines.append(f"{k}: {_plain(v)}")
    page.bullets(lines or ["(none recorded)"])
    page.paragraph("results.json holds every number above and the per-seed values they were computed from; "
                   "trickbag.atlas.report.render_results(folder) redraws this report from it.")
    return page.write(out)
