"""The ablation report: one row per arm (or per effect, for a factorial screening) whose verdict is
read off the interval drawn beside it, the power of the design, plots that do not mislead, and
the provenance; ``results.json`` and ``table.txt`` keep the numbers the report was made from."""

from __future__ import annotations

import json
import math
import statistics
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trickbag import _study, catalog
from trickbag._atomic import save_figure, write_text
from trickbag.ablation.stats import (MIN_SEEDS, arm_verdict, interval_verdict, min_detectable_effect, outlying_seeds,
                                     paired, paired_differences, resolution_of, sd_upper_limit, sequential, sign_flip_p)
from trickbag.report import Page, fmt
from trickbag.report.plots import COLORS, pyplot

__all__ = ["collect", "failed_seeds", "load_results", "render", "render_results", "rows_of", "table_text"]

GREEN, RED, GREY = "#1a7f37", "#d1242f", "#6e7781"
#: Tricks that train against other targets than the hard labels: their training loss measures
#: another quantity than the baseline's (label smoothing's and mixup's loss never reach zero).
TARGET_CHANGING = ("label_smoothing", "mixup", "cutmix")


def collect(out: str | Path) -> dict[str, Any]:
    """Trials of the ablation in ``out``, grouped by arm: values, curves and times per seed."""
    from trickbag.ablation.runner import load_spec

    meta, spec = load_spec(out)
    store = _study.open_storage(meta["storage"])
    planned = _study.PlannedStudy(store, meta["study"], spec.direction, spec.slots(), spec.plan_id())
    planned.open(create=False)  # a report reads; it never creates a study or queues trials
    if spec.adaptive:
        planned.slots = planned.stored_slots()
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


# ---- results.json: the numbers, without the storage ----------------------------------------------

def _results_payload(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "spec": data["spec"].to_dict(),
        "arms": [{"label": e["arm"].label, "values": {str(s): v for s, v in sorted(e["values"].items())},
                  "train_time": {str(s): v for s, v in sorted(e["train_time"].items())},
                  "history": {str(s): h for s, h in sorted(e["history"].items())}, "failures": e["failures"]}
                 for e in data["arms"]],
        # how many trials ran at once on each machine (machines by number: no host names in results)
        "workers": {f"machine {i + 1}": n for i, n in enumerate(data["workers"].values())},
        "counts": data["counts"], "started": data["started"],
        "finished": data["finished"], "provenance": data["meta"].get("provenance", {}),
    }


def load_results(path: str | Path) -> dict[str, Any]:
    """The ``collect()``-shaped data of a saved ``results.json`` (no storage needed), for
    ``rows_of`` and ``table_text``."""
    from trickbag.ablation.runner import AblationSpec

    raw = json.loads(Path(path).read_text())
    spec = AblationSpec.from_dict(raw["spec"])
    if [e["label"] for e in raw["arms"]] != [a.label for a in spec.arms]:
        raise ValueError(f"{path}: its arms do not match its spec")

    def ints(d: dict[str, Any]) -> dict[int, Any]:
        return {int(s): v for s, v in d.items()}

    arms = [{"arm": a, "values": ints(e["values"]), "train_time": ints(e["train_time"]),
             "history": ints(e.get("history", {})), "failures": e.get("failures", [])}
            for a, e in zip(spec.arms, raw["arms"])]
    return {"meta": {"provenance": raw.get("provenance", {})}, "spec": spec, "arms": arms,
            "counts": raw.get("counts", {}), "workers": raw.get("workers", {}), "started": raw.get("started"),
            "finished": raw.get("finished")}


# ---- rows: the statistics of each arm -------------------------------------------------------------

def _shared(workers: dict[str, int]) -> bool:
    """Did trials share a machine (so that their times are noise)?"""
    return any(n > 1 for n in workers.values()) or len(workers) > 1


def failed_seeds(entry: dict[str, Any]) -> list[int]:
    """The seeds of an arm's failed trials (from its ``failures``: ``"seed N: why"``)."""
    seeds = []
    for text in entry.get("failures", []):
        head = str(text).split(":", 1)[0].split()
        if len(head) == 2 and head[0] == "seed" and head[1].lstrip("-").isdigit():
            seeds.append(int(head[1]))
    return sorted(set(seeds))


def _analysed_values(data: dict[str, Any]) -> list[dict[int, float]]:
    """Per arm, the values compared: the finished seeds' (``failures: exclude``), or with each failed
    trial scoring the worst value any trial reached (``failures: worst``, intention to treat)."""
    spec = data["spec"]
    values = [dict(e["values"]) for e in data["arms"]]
    if spec.failures == "worst":
        seen = [v for vals in values for v in vals.values() if v == v]
        if seen:
            worst = max(seen) if spec.direction == "minimize" else min(seen)
            for vals, entry in zip(values, data["arms"]):
                for s in failed_seeds(entry):
                    vals.setdefault(s, worst)
    return values


def variance_sources(vary_data: bool) -> str:
    """What the seed-to-seed spread (and so the intervals) covers."""
    sources = "initial weights, data order and augmentation draws (train.seed)"
    if vary_data:
        sources += ", and the validation split, training subset and label-noise draw (ablation.vary_data)"
    else:
        sources += "; not the data draw (one validation split, subset and label noise for all seeds)"
    return sources


def rows_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per arm (add-one, leave-one-out, grid) or per effect (factorial), with the verdict
    read off the interval that is drawn: the simultaneous (Bonferroni) t interval of a fixed
    number of seeds, or the anytime-valid confidence sequence of adaptive seeds (``arm_verdict``:
    no verdict below three seeds, none when the sd is below the metric's resolution, never
    "helps" for an arm with failed trials unless they are scored as the worst value)."""
    spec = data["spec"]
    if spec.mode == "factorial":
        return _factorial_rows(data)
    maximize = spec.direction == "maximize"
    values_of = _analysed_values(data)
    ref_index = next(i for i, a in enumerate(data["arms"]) if a["arm"].reference)
    ref, ref_values = data["arms"][ref_index], values_of[ref_index]
    m = len(data["arms"]) - 1
    design = "sequential" if spec.adaptive else "fixed"
    alpha = spec.alpha
    resolution = spec.resolution if spec.resolution is not None else resolution_of(
        [v for e in data["arms"] for v in e["values"].values()])
    rows = []
    for entry, values in zip(data["arms"], values_of):
        arm = entry["arm"]
        vals = list(values.values())
        failed = failed_seeds(entry)
        row: dict[str, Any] = {
            "label": arm.label, "reference": arm.reference, "n": len(vals),
            "mean": statistics.fmean(vals) if vals else math.nan,
            "std": statistics.stdev(vals) if len(vals) > 1 else math.nan,
            "time": statistics.fmean(entry["train_time"].values()) if entry["train_time"] else math.nan,
            "failures": entry["failures"], "failed": len(failed), "tried": len(set(entry["values"]) | set(failed)),
            "effect_of": arm.effect_of, "design": design, "m": m, "alpha": alpha,
            "direction": spec.direction, "vary_data": spec.vary_data, "failure_rule": spec.failures,
            "resolution": resolution,
        }
        if not arm.reference:
            # effect of the trick: arm - reference in add-one and grid, reference - arm when left out
            first, second = (ref_values, values) if arm.sign > 0 else (values, ref_values)
            raw = paired(first, second)
            row["paired"] = raw
            row["n"] = raw.n
            diffs = paired_differences(first, second)
            row["diffs"] = diffs
            if design == "fixed":
                adj = paired(first, second, confidence=1 - alpha / m)
                row.update(effect=raw.mean, sd=raw.std, low=adj.ci_low, high=adj.ci_high, p=raw.p_value,
                           p_adj=min(1.0, m * raw.p_value) if raw.p_value == raw.p_value else math.nan)
            else:
                seq = sequential(first, second, alpha=alpha, m=m, tau=spec.tau)
                row.update(effect=seq.mean, sd=seq.std, low=seq.ci_low, high=seq.ci_high, p=seq.p_value,
                           p_adj=min(1.0, m * seq.p_value), decided_at=seq.decided_at, e_value=seq.e_value)
            # an arm's failures count against it only when they are left out of the comparison
            not_scored = row["failed"] if spec.failures == "exclude" else 0
            row["verdict"] = arm_verdict(raw.n, row["low"], row["high"], maximize=maximize, sd=row["sd"],
                                         mean=row["effect"], resolution=resolution, failed=not_scored,
                                         seeds=row["tried"])
            row["p_sign"] = sign_flip_p(list(diffs.values())) if diffs else math.nan
            row["p_sign_adj"] = min(1.0, m * row["p_sign"]) if row["p_sign"] == row["p_sign"] else math.nan
            row["disagree"] = _tests_disagree(row, alpha, m)
            row["outliers"] = outlying_seeds(diffs, resolution=resolution)
            # power at the 80% upper confidence limit of the sd: the observed sd flatters small samples
            row["sd_upper"] = sd_upper_limit(row["sd"], raw.n) if raw.n >= 2 else math.nan
            row["mde"] = min_detectable_effect(raw.n, row["sd_upper"], alpha=alpha, m=m, design=design, tau=spec.tau)
            common = sorted(set(ref["train_time"]) & set(entry["train_time"]))
            ratios = [entry["train_time"][s] / ref["train_time"][s] - 1 for s in common if ref["train_time"][s] > 0]
            row["overhead"] = statistics.fmean(ratios) if ratios else math.nan
            row["overhead_noise"] = _shared(data["workers"])
        rows.append(row)
    return rows


def _tests_disagree(row: dict[str, Any], alpha: float, m: int) -> str:
    """``"t only"`` or ``"sign-flip only"`` when one test rejects at the adjusted level and the other
    does not, among rows of a fixed design where the sign-flip test can reach that level at all
    (``2^(1-n) < alpha / m``); else ``""``."""
    n = row["n"]
    if row["design"] != "fixed" or n < MIN_SEEDS or 2.0 ** (1 - n) >= alpha / m:
        return ""
    t_rejects = row["p_adj"] == row["p_adj"] and row["p_adj"] < alpha
    sign_rejects = row["p_sign_adj"] == row["p_sign_adj"] and row["p_sign_adj"] < alpha
    if t_rejects == sign_rejects:
        return ""
    return "t only" if t_rejects else "sign-flip only"


def _factorial_design(spec):
    from trickbag.ablation.factorial import fractional_factorial

    design = fractional_factorial(len(spec.tricks))
    names = [t.label() for t in spec.tricks]
    # the arms carry the design's runs: check, rather than trust, that they still match it
    for arm, row in zip(spec.arms, design.matrix):
        on = {t.label() for t in arm.tricks}
        if on != {n for n, level in zip(names, row) if level > 0}:
            raise ValueError(f"arm {arm.label!r} is not the design's run {row.tolist()}")
    return design, names


def _factorial_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    from trickbag.ablation.factorial import analyze

    spec = data["spec"]
    design, names = _factorial_design(spec)
    maximize = spec.direction == "maximize"
    seeds = sorted(set.intersection(*(set(e["values"]) for e in data["arms"])))
    rows: list[dict[str, Any]] = []
    if len(seeds) < 2:
        return [{"label": "needs every run under 2+ seeds", "kind": "main", "n": len(seeds), "verdict": ""}]
    y = np.array([[e["values"][s] for s in seeds] for e in data["arms"]])
    for est in analyze(design, y, names, alpha=spec.alpha):
        # the error is pooled over runs x seeds, so two seeds already give it several degrees of freedom
        v = interval_verdict(len(seeds), est.ci_low, est.ci_high, maximize=maximize, min_n=2)
        if est.kind == "interaction" and v in ("helps", "hurts"):
            v = "synergy" if v == "helps" else "interference"
        rows.append({"label": est.label, "kind": est.kind, "n": len(seeds), "effect": est.effect, "low": est.ci_low,
                     "high": est.ci_high, "p": est.p_value, "p_adj": est.p_adjusted, "verdict": v, "df": est.df,
                     "se": est.se, "design": "factorial", "direction": spec.direction})
    return rows


# ---- the table as printed --------------------------------------------------------------------------

def _num(x: float, width: int, spec: str = "+.4f") -> str:
    text = format(x, spec) if x == x and math.isfinite(x) else ("inf" if x == math.inf else "")
    return f"{text:>{width}}"


def _fail_text(r: dict[str, Any]) -> str:
    return f"{r.get('failed', 0)}/{r.get('tried', r['n'])}"


def _notes(r: dict[str, Any]) -> str:
    """Flags of a row: tests that disagree, seeds whose paired difference is an outlier."""
    notes = []
    if r.get("disagree"):
        notes.append(f"{r['disagree']} (t vs sign-flip)")
    if r.get("outliers"):
        notes.append("outlying seed" + ("s " if len(r["outliers"]) > 1 else " ") + ", ".join(map(str, r["outliers"])))
    return "; ".join(notes)


def direction_line(rows: list[dict[str, Any]], metric: str) -> str:
    """``direction: higher is better (val_acc)``, from the rows' direction."""
    direction = next((r.get("direction") for r in rows if r.get("direction")), None)
    if direction is None:
        return ""
    return f"direction: {'higher' if direction == 'maximize' else 'lower'} is better ({metric})"


def table_text(rows: list[dict[str, Any]], metric: str) -> str:
    """The results table as the terminal prints it (and the README shows it), with a legend."""
    if any("kind" in r for r in rows):
        return _factorial_text(rows, metric)
    tested = [r for r in rows if not r["reference"]]
    design = tested[0]["design"] if tested else "fixed"
    m = tested[0]["m"] if tested else 0
    fixed = design == "fixed"
    w = max([24] + [len(r["label"]) for r in rows])
    vw = max(22, *(len(r["verdict"]) for r in tested)) if tested else 22
    ci = "95% CI (simultaneous)" if fixed else "95% CS (anytime)"
    sign_head = f" {'p(sign)':>7}" if fixed else ""
    lines = [f"{'arm':<{w}} {'n':>3} {'failed':>6} {metric:>9} {'effect':>8} {ci:>21} {'p(adj)':>7}{sign_head}  "
             f"{'verdict':<{vw}} {'MDE80':>7}  notes"]
    for r in rows:
        if r["reference"]:
            lines.append(f"{r['label']:<{w}} {r['n']:>3} {_fail_text(r):>6} {_num(r['mean'], 9, '.4f')} {'':>8} "
                         f"{'':>21} {'':>7}{' ' * len(sign_head)}  {'reference':<{vw}}")
            continue
        interval = f"[{_num(r['low'], 0)}, {_num(r['high'], 0)}]" if math.isfinite(r["low"]) else "(too few seeds)"
        sign = f" {_num(r.get('p_sign_adj', math.nan), 7, '.3f')}" if fixed else ""
        lines.append(f"{r['label']:<{w}} {r['n']:>3} {_fail_text(r):>6} {_num(r['mean'], 9, '.4f')} "
                     f"{_num(r['effect'], 8)} {interval:>21} {_num(r['p_adj'], 7, '.3f')}{sign}  "
                     f"{r['verdict']:<{vw}} {_num(r['mde'], 7, '.4f')}  {_notes(r)}")
    if tested:
        ref = next(r["label"] for r in rows if r["reference"])
        first = tested[0]
        how = (f"simultaneous over the {m} arms (Bonferroni)" if fixed else
               f"Lai's anytime-valid confidence sequence at 0.05/{m}, valid however often seeds were added")
        failures = ("failed trials score the worst value seen (intention to treat)"
                    if first.get("failure_rule") == "worst" else
                    "compared on the seeds that finished; an arm with failures is never called helps")
        legend = [
            direction_line(rows, metric),
            f"effect: paired difference from {ref}. 95% {'CI' if fixed else 'CS'}: {how}.",
            f"verdict: helps or hurts when that interval excludes 0; none below {MIN_SEEDS} seeds or when the sd of the "
            f"differences is below the metric's resolution. failed: failed/tried seeds, {failures}.",
            ("p(sign): exact sign-flip p (adjusted as p(adj)), no normality assumed, never below m x 2^(1-n). notes: "
             "rows where it and the t-test disagree; a seed whose difference is an outlier (Grubbs, 5%)." if fixed else
             "Arms stopped early overstate their effects (estimates after optional stopping are biased away from "
             "zero). notes: a seed whose difference is an outlier (Grubbs, 5%)."),
            "MDE80: the smallest effect these seeds detect with 80% power, at the 80% upper confidence limit of the "
            "observed sd (chi-square). Undecided arms: rerun them with --seeds auto (valid under optional stopping), "
            "not with more seeds chosen from this table.",
            f"variance covered: {variance_sources(bool(first.get('vary_data')))}.",
        ]
        lines += [""] + [line for text in legend for line in textwrap.wrap(text, 100)]
    return "\n".join(line.rstrip() for line in lines)


def _factorial_text(rows: list[dict[str, Any]], metric: str = "") -> str:
    w = max([24] + [len(r["label"]) for r in rows])
    lines = [f"{'effect':<{w}} {'estimate':>9} {'95% CI (simultaneous)':>21} {'p(adj)':>7}  verdict"]
    for r in rows:
        if "effect" not in r:
            lines.append(r["label"])
            continue
        lines.append(f"{r['label']:<{w}} {_num(r['effect'], 9)} {'[' + _num(r['low'], 0) + ', ' + _num(r['high'], 0) + ']':>21} "
                     f"{_num(r['p_adj'], 7, '.3f')}  {r['verdict']}")
    if direction_line(rows, metric):
        lines += ["", direction_line(rows, metric)]
    return "\n".join(line.rstrip() for line in lines)


# ---- plots ---------------------------------------------------------------------------------------

def bar_color(row: dict[str, Any], maximize: bool) -> str:
    """The colour of an effect's bar, from the interval drawn with it (so they cannot disagree):
    green when the interval lies wholly on the better side of zero, red on the worse, else grey;
    grey too when the row's verdict withholds the call (too few seeds, failures, below resolution)."""
    verdict = row.get("verdict")
    if verdict is not None and verdict not in ("helps", "hurts", "synergy", "interference"):
        return GREY
    low, high = row["low"], row["high"]
    if low == low and low > 0:
        return GREEN if maximize else RED
    if high == high and high < 0:
        return RED if maximize else GREEN
    return GREY


def _plot_effects(rows, spec, path: Path) -> None:
    """The effects with the intervals their verdicts are read off and, for arms, a strip plot of the
    per-seed paired differences beside them (outlying seeds named, rows where the t and the sign-flip
    tests disagree marked)."""
    plt = pyplot()
    tested = [r for r in rows if "effect" in r]
    strip = any(r.get("diffs") for r in tested)
    maximize = spec.direction == "maximize"
    height = 0.45 * len(tested) + 1.6
    if strip:
        fig, (ax, sx) = plt.subplots(1, 2, figsize=(11.5, height), dpi=110, sharey=True,
                                     gridspec_kw={"width_ratios": [1.25, 1]})
    else:
        fig, ax = plt.subplots(figsize=(7.5, height), dpi=110)
    for i, r in enumerate(tested):
        ax.barh(i, r["effect"], color=bar_color(r, maximize), alpha=0.75, height=0.6)
        if math.isfinite(r["low"]) and math.isfinite(r["high"]):
            ax.errorbar(r["effect"], i, xerr=[[r["effect"] - r["low"]], [r["high"] - r["effect"]]], fmt="none",
                        ecolor="black", capsize=4, linewidth=1.2)
        else:
            ax.annotate("interval unbounded (too few seeds)", (r["effect"], i), fontsize=7, va="center")
    ax.axvline(0.0, color="black", linewidth=0.8)
    labels = [r.get("effect_of") or r["label"] for r in tested]
    labels = [(lb if len(lb) < 48 else lb[:45] + "...") + (" *" if r.get("disagree") else "")
              for lb, r in zip(labels, tested)]
    ax.set_yticks(range(len(tested)), labels, fontsize=8)
    ax.invert_yaxis()
    kind = {"fixed": "simultaneous 95% CI (Bonferroni)", "sequential": "anytime-valid 95% confidence sequence",
            "factorial": "simultaneous 95% CI (Bonferroni)"}[tested[0]["design"] if tested else "fixed"]
    better = "higher" if maximize else "lower"
    ax.set_xlabel(f"effect on {spec.metric} ({better} is better); whiskers: {kind}", fontsize=8)
    ax.set_title("green: helps, red: hurts, grey: no verdict, read off the interval drawn", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    if strip:
        rng = np.random.default_rng(0)  # a fixed jitter: the plot of the same numbers is the same file
        for i, r in enumerate(tested):
            diffs = r.get("diffs") or {}
            outliers = set(r.get("outliers") or [])
            for seed, d in diffs.items():
                y = i + float(rng.uniform(-0.18, 0.18))
                odd = seed in outliers
                sx.plot(d, y, "o", markersize=5 if odd else 4, color=RED if odd else COLORS[0],
                        alpha=0.95 if odd else 0.7, markeredgecolor="black" if odd else "none", markeredgewidth=0.6)
                if odd:
                    sx.annotate(f"seed {seed}", (d, y), xytext=(4, 3), textcoords="offset points", fontsize=7,
                                color=RED)
            if diffs:
                sx.plot([r["effect"]] * 2, [i - 0.28, i + 0.28], color="black", linewidth=1.2)
        sx.axvline(0.0, color="black", linewidth=0.8)
        sx.set_xlabel(f"per-seed paired difference in {spec.metric}; bar: their mean", fontsize=8)
        sx.set_title("each seed's difference; red: an outlying seed (Grubbs, 5%);\n"
                     "* after a label: the t and sign-flip tests disagree", fontsize=8)
        sx.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def changes_target(arm) -> bool:
    """Does this arm train against other targets than the hard labels (so that its training
    loss is not comparable with the baseline's)?"""
    for t in arm.tricks:
        entry = catalog.get(t.name)
        if entry.name in TARGET_CHANGING or entry.use == "loss":
            return True
    return False


def _curve(entry, key: str):
    curves = [[h.get(key) for h in hist] for hist in entry["history"].values() if hist]
    curves = [c for c in curves if c and all(v is not None for v in c)]
    if not curves:
        return None
    length = min(len(c) for c in curves)
    cols = np.array([c[:length] for c in curves], dtype=float)
    return np.arange(1, length + 1), cols.mean(0), cols.min(0), cols.max(0)


def _points(x) -> dict[str, Any]:
    """Markers on curves of a few epochs (a one-epoch curve is otherwise invisible)."""
    return {"marker": "o", "markersize": 4} if len(x) <= 3 else {}


def _plot_curves(data, key: str, path: Path, ylabel: str, *, loss: bool = False) -> bool:
    """Small multiples: one panel per arm, its mean over seeds (band: min to max) over the
    reference's in grey, so that no arm's line hides under another's. On the training loss, arms
    that change the target are dashed and say that their loss is not comparable."""
    plt = pyplot()
    entries = data["arms"]
    ref = next((e for e in entries if e["arm"].reference), None)
    ref_curve = _curve(ref, key) if ref is not None else None
    panels = [e for e in entries if e is not ref and _curve(e, key) is not None]
    if not panels:
        return False
    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.1 * cols + 0.6, 2.3 * nrows + 0.7), dpi=110, sharex=True,
                             sharey=True, squeeze=False)
    for i, entry in enumerate(panels):
        ax = axes[i // cols][i % cols]
        if ref_curve is not None:
            x, mean, lo, hi = ref_curve
            ax.plot(x, mean, color="#57606a", linewidth=1.3, label=ref["arm"].label, **_points(x))
            ax.fill_between(x, lo, hi, color="#57606a", alpha=0.15, linewidth=0)
        x, mean, lo, hi = _curve(entry, key)
        other = loss and changes_target(entry["arm"])
        color = COLORS[0]  # one colour for every arm: neither the verdicts' green and red nor a ranking
        ax.plot(x, mean, color=color, linewidth=1.5, linestyle="--" if other else "-", label="this arm", **_points(x))
        if len(x) == 1:  # one epoch: a point and its min-max whisker, not an empty band
            ax.errorbar(x, mean, yerr=[[mean[0] - lo[0]], [hi[0] - mean[0]]], color=color, capsize=3, linewidth=1)
        if len(x) <= 3:
            ax.set_xticks(list(x))
            ax.set_xlim(min(x) - 0.5, max(x) + 0.5)
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)
        title = entry["arm"].label if len(entry["arm"].label) < 40 else entry["arm"].label[:37] + "..."
        if other:
            title += "\n(soft targets: loss not comparable)"
        ax.set_title(title, fontsize=7.5, color="#9a6700" if other else "black")
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for j in range(len(panels), nrows * cols):
        axes[j // cols][j % cols].set_visible(False)
    from matplotlib.ticker import MaxNLocator

    if max(len(_curve(e, key)[0]) for e in panels) > 3:  # short curves keep their own epoch ticks
        axes[0][0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].legend(fontsize=6.5, loc="best")
    fig.supxlabel("epoch", fontsize=8)
    fig.supylabel(ylabel, fontsize=8)
    ref_text = f"grey: {ref['arm'].label}; " if ref is not None else ""
    fig.suptitle(f"{ref_text}mean over seeds, band: min to max", fontsize=8.5)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return True


# ---- the page --------------------------------------------------------------------------------------

def _where(url: str) -> str:
    """Storage without credentials or local paths: the file name of a SQLite database."""
    if url.startswith("sqlite"):
        return f"{Path(url.split(':///', 1)[-1]).name} (SQLite, in this folder)"
    return url.split("@")[-1]


def _arm_table(page: Page, rows, spec, data) -> None:
    ref_label = next(r["label"] for r in rows if r["reference"])
    tested = [r for r in rows if not r["reference"]]
    design = tested[0]["design"] if tested else "fixed"
    fixed = design == "fixed"
    interval = "simultaneous 95% CI" if fixed else "anytime-valid 95% CS"
    shared = _shared(data["workers"])
    # adaptive seeds: no raw 95% interval (after optional stopping it covers less than 95%), no sign-flip p
    headers = (["arm", "n", "failed / tried", spec.metric, "sd", f"effect vs {ref_label}", interval, "p (adjusted)"]
               + (["sign-flip p (adjusted)"] if fixed else []) + ["verdict", "MDE at 80% power", "notes"]
               + (["raw 95% CI"] if fixed else [])
               + ["train time (s)", "time overhead (noise: shared machine)" if shared else "time overhead"])
    table, classes = [], []
    for r in rows:
        if r["reference"]:
            table.append([r["label"], r["n"], _fail_text(r), r["mean"], r["std"], "", "", ""] + ([""] if fixed else [])
                         + ["reference", "", ""] + ([""] if fixed else []) + [r["time"], ""])
            classes.append("")
            continue
        raw = r["paired"]
        raw_ci = f"[{fmt(raw.ci_low)}, {fmt(raw.ci_high)}]" if raw.ci_low == raw.ci_low else ""
        ci = f"[{fmt(r['low'])}, {fmt(r['high'])}]" if math.isfinite(r["low"]) else "unbounded (too few seeds)"
        overhead = r.get("overhead")
        over = f"{100 * overhead:+.0f}%" if overhead is not None and overhead == overhead else ""
        if over and shared:
            over = f"({over})"
        table.append([r["label"], r["n"], _fail_text(r), r["mean"], r["std"], r["effect"], ci, r["p_adj"]]
                     + ([r["p_sign_adj"]] if fixed else []) + [r["verdict"], r["mde"], _notes(r)]
                     + ([raw_ci] if fixed else []) + [r["time"], over])
        classes.append(r["verdict"] if r["verdict"] in ("helps", "hurts") else "")
    page.table(headers, table, classes)


def _explain_arms(page: Page, rows, spec, data) -> None:
    ref_label = next(r["label"] for r in rows if r["reference"])
    tested = [r for r in rows if not r["reference"]]
    m = len(tested)
    sign_note = ("In leave-one-out mode the effect of a trick is (all tricks) minus (all but that trick), so a "
                 "positive effect means the trick helps. " if spec.mode == "leave-one-out" else "")
    page.paragraph(
        f"{sign_note}Effects are paired differences over seeds: seed i gives every arm the same initial weights and "
        f"data order{' and the same data draw' if spec.vary_data else ''}, so each difference is measured on one "
        f"seed. The metric is the final epoch's {spec.metric} on the validation split "
        f"({'higher' if spec.direction == 'maximize' else 'lower'} is better: "
        f"{'set with ablation.direction or --direction' if _direction_given(spec) else 'from the metric name'}); "
        "the test split is not used. " + (
            "Trials ran with deterministic algorithms (train.deterministic: true): a seed repeats bit for bit, so "
            "the spread over seeds is the seeds' alone." if spec.base.train.deterministic else
            "Trials did not force deterministic algorithms (train.deterministic: false): on a GPU, nondeterministic "
            "kernels add a little noise beyond the seed's (set train.deterministic: true to rule it out; on CPU "
            "runs repeat exactly)."))
    page.paragraph(
        f"Sources of variance the intervals cover: {variance_sources(spec.vary_data)}. "
        + ("Each seed draws its own data (data.split_seed + i), the same for every arm, so a verdict holds over "
           "data draws, not for one draw only." if spec.vary_data else
           "Every seed sees the same data draw, so a verdict is about this draw; set ablation.vary_data: true "
           "for seed i to draw its own (Bouthillier et al. 2021, 'Accounting for variance in machine learning "
           "benchmarks')."))
    failed_total = sum(r["failed"] for r in rows)
    page.paragraph(
        f"Verdicts need {MIN_SEEDS} or more paired seeds (with two, the sd of the differences is a single number, "
        "and for a quantised metric often float rounding). A row whose differences have an sd below the metric's "
        f"resolution ({_resolution_text(rows)}) is undecidable: every difference is the same step of it "
        "(precisely, the sd is below resolution / sqrt(n), the least sd of differences that are not all equal), "
        "and a t interval would have no width. "
        + ("Failed trials (diverged or crashed) score the worst value any trial reached (intention to treat), so an "
           "arm pays for its failures in the comparison." if spec.failures == "worst" else
           "Failed trials (diverged or crashed) are left out of the comparison, which is then on the seeds that "
           "finished; since divergence is an outcome too, an arm with any failure is never called 'helps' "
           "(ablation.failures: worst scores them as the worst value seen instead).")
        + (f" {failed_total} trial(s) failed: see 'Failed trials'." if failed_total else ""))
    if spec.adaptive:
        used = sum(len(e["values"]) + len(e["failures"]) for e in data["arms"])
        page.paragraph(
            f"Seeds were added adaptively (--seeds auto, budget {spec.budget} trials, {used} used): after a first "
            f"round, each arm whose interval still contained zero got one more paired seed, until every arm was "
            f"decided or the budget ran out. The test is Lai's normal-mixture sequential t-test (Lai 1976, 'On "
            f"confidence sequences', Annals of Statistics 4(2); the scale-invariant mixture e-process of Perez-Ortiz, "
            f"Lardy, de Heide and Grunwald 2024), mixing over standardised effects with scale tau = {spec.tau:g}, at "
            f"level 0.05/{m} per arm (Bonferroni over the {m} comparisons). The interval drawn is the running "
            f"intersection of its confidence sequence: it holds at every number of seeds at once, so adding seeds "
            f"until it excludes zero keeps the chance of any false 'helps' or 'hurts' at or below 0.05. The verdict "
            f"is read off that interval, and p (adjusted) = min(1, {m} x p) is below 0.05 exactly when it excludes "
            f"zero. The price of looking after every seed is a wider interval than a fixed design's at the same n. "
            "No raw 95% interval is shown: after optional stopping it covers less than 95%. The effects of arms "
            "that stopped early are biased away from zero (an arm stops when its running mean happens to be far "
            "out), so read their size with caution; the verdicts keep their guarantee.")
    else:
        page.paragraph(
            f"The interval drawn is the simultaneous 95% interval: scipy's paired t interval at level 1 - 0.05/{m} "
            f"(Bonferroni over the {m} comparisons), so all {m} intervals hold together with probability 0.95. The "
            f"verdict is read off it: helps or hurts when it lies wholly on one side of zero, and p (adjusted) = "
            f"min(1, {m} x p) is below 0.05 exactly then. The raw 95% interval of each arm alone is shown beside it; "
            f"'no evidence' means this number of seeds cannot tell the arm from {ref_label}, not that the trick does "
            "nothing. The t interval assumes roughly normal differences: the sign-flip p beside it is exact without "
            "that assumption (the share of the 2^n sign patterns of the differences whose mean is as far from 0), "
            "but it can never go below 2^(1-n), so it can confirm a verdict only from "
            f"{_sign_flip_seeds(spec.alpha, m)} seeds at this adjusted level; where both can reach it and they "
            "disagree, the row is marked. A seed whose difference is an outlier (one arm collapsing on one seed) "
            "is named in the notes and shown in the strip plot: a skewed difference makes t intervals too short.")
    page.paragraph(
        "Power: 'MDE at 80% power' is the smallest true effect that this number of seeds detects with probability "
        "0.8, at the 80% upper confidence limit of the seed-to-seed standard deviation of the paired differences "
        "(chi-square), not at the observed sd, which flatters small samples (noncentral t, at the same adjusted "
        f"level{'; for the sequential design a conservative figure from its interval at this n' if spec.adaptive else ''}). "
        "For an undecided arm, do not pick a number of seeds from its observed effect and test again (post-hoc "
        "power: it raises the false-verdict rate); run it with --seeds auto, whose sequential test stays valid "
        "however often seeds are added.")
    if _shared(data["workers"]):
        page.paragraph(
            "Train times were measured with several trials running at once "
            f"({', '.join(str(n) for n in data['workers'].values())} at once on {len(data['workers'])} machine(s)), "
            "sharing the machine: they show "
            "relative cost at best, and the time-overhead column, in parentheses, is noise (it can change sign "
            "between identical runs); time one trial alone to measure a trick's cost.")


def _direction_given(spec) -> bool:
    from trickbag.ablation.runner import direction_of

    return spec.direction != direction_of(spec.metric)


def _resolution_text(rows) -> str:
    res = next((r.get("resolution") for r in rows if r.get("resolution") is not None), 0.0)
    if res and res > 0:
        inverse = 1 / res
        return f"1/{inverse:.0f}, detected from the values" if abs(inverse - round(inverse)) < 1e-6 else f"{res:.3g}"
    return "none detected: a continuous metric, so only float rounding counts"


def _sign_flip_seeds(alpha: float, m: int) -> int:
    n = 2
    while 2.0 ** (1 - n) >= alpha / m:
        n += 1
    return n


def _factorial_page(page: Page, rows, spec, data, out: Path) -> None:
    design, names = _factorial_design(spec)
    from trickbag.ablation.factorial import LETTERS

    legend = ", ".join(f"{LETTERS[i]} = {n}" for i, n in enumerate(names))
    res = f"resolution {design.resolution}" if design.resolution else "a full factorial"
    seeds = rows[0]["n"] if rows else 0
    page.paragraph(
        f"A two-level {'fractional ' if design.generators else ''}factorial screening of {design.k} tricks in "
        f"{design.runs} runs (all subsets: {2 ** design.k}), each under {seeds} paired seeds: {res}, minimum "
        f"aberration. Factors: {legend}."
        + (f" Generators: {', '.join(design.generator_text())}; defining relation I = "
           f"{' = '.join(''.join(LETTERS[i] for i in range(design.k) if w >> i & 1) for w in design.words)}."
           if design.generators else ""))
    page.heading("Effects")
    page.table(["effect", "estimate", "simultaneous 95% CI", "p (adjusted)", "verdict"],
               [[r["label"], r.get("effect", ""), f"[{fmt(r['low'])}, {fmt(r['high'])}]" if "low" in r else "",
                 r.get("p_adj", ""), r["verdict"]] for r in rows],
               [r["verdict"] if r["verdict"] in ("helps", "hurts") else "" for r in rows])
    aliased = [r["label"] for r in rows if r.get("kind") == "interaction" and " = " in r["label"]]
    page.paragraph(
        "A main effect is mean(metric with the trick) - mean(metric without it) over all runs and seeds; a two-trick "
        "interaction A x B is half of (A's effect with B on - A's effect with B off): positive means the pair does "
        "better together than their separate effects add up to ('synergy' when the interval excludes zero, "
        "'interference' when it is wholly negative). "
        + ("At resolution IV no main effect is confounded with another main effect or a two-trick interaction; main "
           "effects are aliased with three-trick interactions, assumed small. " if design.generators else "")
        + "Seeds are blocks: the error is the pooled seed-by-run scatter "
          f"({rows[0].get('df', 0) if rows else 0} degrees of freedom), and the intervals are t intervals at level "
          f"1 - 0.05/{len(rows)} (Bonferroni over the {len(rows)} effects), so verdicts read off them hold together.")
    if aliased:
        page.paragraph("Aliased interactions (the design cannot tell the pairs in one row apart; a follow-up "
                       "ablation of the pair, or the fold-over design, separates them):")
        page.bullets(aliased)
    page.heading("Runs")
    page.table(["run", "n", spec.metric, "sd"],
               [[e["arm"].label, len(e["values"]), statistics.fmean(e["values"].values()) if e["values"] else math.nan,
                 statistics.stdev(e["values"].values()) if len(e["values"]) > 1 else math.nan] for e in data["arms"]])
    if rows and "effect" in rows[0]:
        page.heading("Plots")
        _plot_effects(rows, spec, out / "effects.png")
        page.image("effects.png", "Main effects and interaction chains, with simultaneous 95% intervals")


def render(out: str | Path) -> dict[str, Any]:
    """Write ``report.md``, ``report.html``, the PNGs, ``results.json`` and ``table.txt`` of the
    ablation in ``out``; return the table rows and the report paths."""
    out = Path(out)
    data = collect(out)
    write_text(out / "results.json", json.dumps(_results_payload(data), indent=1, default=str) + "\n")
    paths = _render_page(data, out)
    rows = rows_of(data)
    write_text(out / "table.txt", table_text(rows, data["spec"].metric) + "\n")
    return {"rows": rows, "report": [str(p) for p in paths]}


def render_results(folder: str | Path) -> dict[str, Any]:
    """Re-render the report, PNGs and ``table.txt`` of a folder from its ``results.json`` alone (no
    storage: the way committed results are kept current)."""
    folder = Path(folder)
    data = load_results(folder / "results.json")
    paths = _render_page(data, folder)
    rows = rows_of(data)
    write_text(folder / "table.txt", table_text(rows, data["spec"].metric) + "\n")
    return {"rows": rows, "report": [str(p) for p in paths]}


def _render_page(data: dict[str, Any], out: Path) -> list[Path]:
    spec, counts, meta = data["spec"], data["counts"], data["meta"]
    rows = rows_of(data)
    base = spec.base
    page = Page(f"Ablation: {spec.metric} on {base.data.name} with {base.model['name']}")
    wall = (data["finished"] - data["started"]) if data["finished"] and data["started"] else None
    seeds = f"adaptive seeds (budget {spec.budget} trials)" if spec.adaptive else f"{spec.seeds} seeds"
    summary = (f"{spec.mode} over {len(spec.tricks)} tricks: {len(spec.arms)} arms x {seeds}; "
               f"{counts.get('done')} of {counts.get('planned')} trials complete.")
    if wall is not None:
        summary += f" Wall time from first to last trial: {wall / 60:.1f} min."
    page.paragraph(summary)
    if counts.get("done", 0) < counts.get("planned", 0):
        page.warning(f"{counts['planned'] - counts['done']} trials have not finished; rerun the same command to continue.")
    if spec.mode == "factorial":
        _factorial_page(page, rows, spec, data, out)
    else:
        page.heading("Results")
        _arm_table(page, rows, spec, data)
        _explain_arms(page, rows, spec, data)
        page.heading("Plots")
        _plot_effects(rows, spec, out / "effects.png")
        page.image("effects.png", "Effect of each trick with the interval its verdict is read off, and beside it "
                                  "each seed's paired difference (outlying seeds named)")
        if _plot_curves(data, spec.metric, out / "curves_metric.png", f"validation {spec.metric}"):
            page.image("curves_metric.png", f"Validation {spec.metric} per epoch: each arm in its own panel over the "
                                            "reference in grey")
        if _plot_curves(data, "train_loss", out / "curves_train_loss.png", "training loss", loss=True):
            page.image("curves_train_loss.png",
                       "Training loss per epoch (the data loss, before flooding and penalties). Arms that train on "
                       "soft targets (label smoothing, mixup, cutmix) or another loss are dashed: their loss "
                       "measures something else and cannot be compared with the reference's; compare their "
                       "validation curves instead.")
    failures = [f"{e['arm'].label}: {f}" for e in data["arms"] for f in e["failures"]]
    if failures:
        page.heading("Failed trials")
        page.bullets(failures)
    page.heading("Provenance")
    prov = meta.get("provenance", {})
    used = sorted({s for e in data["arms"] for s in e["values"]})
    page.bullets([
        f"trickbag {prov.get('trickbag')}, git {prov.get('git')}, torch {prov.get('torch')}",
        f"hardware: {prov.get('hardware')}",
        f"seeds: {', '.join(str(base.train.seed + i) for i in used)} (paired across arms)",
    ] + ([f"study {meta['study']} in {_where(meta['storage'])}"] if "study" in meta else []))
    page.paragraph("Arms (tricks added to the base config):")
    page.bullets([f"{a.label}: {', '.join(t.label() for t in a.tricks) or '(none)'}" for a in spec.arms])
    page.paragraph("Base config:")
    page.code(yaml.safe_dump(base.to_dict(), sort_keys=False), "yaml")
    return page.write(out)
