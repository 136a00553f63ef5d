"""``trickbag.atlas.run``: every (task, trick) cell of a suite as a paired comparison against its
task's baseline, all trials planned in one Optuna study (``trickbag._study``), trained by the
ablation's trial code, then the report (``trickbag.atlas.report.write_report``)."""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trickbag import _study
from trickbag._atomic import remove_orphans, write_json
from trickbag._provenance import provenance
from trickbag._validate import check_positive_int
from trickbag.ablation.runner import AblationSpec, _check_arms_build
from trickbag.ablation.stats import TAU
from trickbag.ablation.trial import run_trial
from trickbag.atlas.suite import Suite, Task, load_suite
from trickbag.train.config import apply_overrides, load_config

__all__ = ["run", "Cell", "plan_cells", "collect_cells"]

BASELINE = "baseline"


@dataclass
class Cell:
    """One arm of one task: the baseline or a trick, with its ablation spec (base + tricks)."""

    task: Task
    arm: str  # "baseline" or the trick's name
    spec: AblationSpec | None  # None: n/a
    reason: str = ""  # why n/a
    params: dict[str, Any] | None = None

    @property
    def applies(self) -> bool:
        return self.spec is not None


def _cell_spec(task: Task, tricks, sets: list[str]) -> AblationSpec:
    base = load_config(task.config.to_dict(), sets)
    base.source = task.config.source
    return AblationSpec(base=base, tricks=list(tricks), seeds=1, metric=task.metric, direction=task.direction)


def plan_cells(suite: Suite, *, check: bool = True, log=None) -> list[Cell]:
    """The cells of ``suite``, task by task (the baseline first). A trick the suite does not
    apply to a task, or whose arm does not build on it (BlurPool on a model with no strided
    layers, say), is n/a with the reason; a baseline that does not build is an error. With
    ``check``, every arm is built once on the CPU (no training) so that a bad cell fails here."""
    cells: list[Cell] = []
    for task in suite.tasks:
        if log:
            log(f"  {task.name}: loading data and building {1 + sum(k.applies(task.name) for k in suite.tricks)} arms ...")
        spec = _cell_spec(task, [], [])
        if check:
            try:
                _check_arms_build(spec)
            except ValueError as exc:
                raise ValueError(f"task {task.name!r}: its baseline does not build: {exc}") from None
        cells.append(Cell(task, BASELINE, spec, params={}))
        for trick in suite.tricks:
            if not trick.applies(task.name):
                cells.append(Cell(task, trick.name, None, "not applied to this task by the suite"))
                continue
            tricks, sets = trick.for_task(task.name)
            try:
                spec = _cell_spec(task, tricks, sets)
                if check:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        _check_arms_build(spec)
                    nothing = [str(w.message) for w in caught if "found no" in str(w.message)]
                    if nothing:  # model surgery with nothing to change (BlurPool on a text CNN)
                        cells.append(Cell(task, trick.name, None, f"changes nothing on this task: {nothing[0]}"))
                        continue
            except ValueError as exc:
                why = str(exc).splitlines()[0].replace("arm 'baseline' does not build: ", "")
                cells.append(Cell(task, trick.name, None, f"does not build on this task: {why}"))
                continue
            cells.append(Cell(task, trick.name, spec, params=trick.params(task.name)))
    return cells


def _slot(cell: Cell, seed: int) -> dict[str, Any]:
    return {"slot": f"{cell.task.name}|{cell.arm}|{seed}", "task": cell.task.name, "arm": cell.arm,
            "label": f"{cell.task.name} / {cell.arm}", "seed": seed}


def _fixed_slots(cells: list[Cell], seeds: int) -> list[dict[str, Any]]:
    """Seed-major over the whole atlas (seed 0 of every cell, then seed 1, ...): an atlas cut
    short still has every cell at the same number of seeds, and whatever shares the machine
    falls on all arms alike; within a seed, task by task (a worker keeps one task's data loaded)."""
    tasks = list(dict.fromkeys(c.task.name for c in cells))
    return [_slot(c, s) for s in range(seeds) for task in tasks for c in cells if c.task.name == task and c.applies]


def trial_config(cell: Cell, seed: int) -> dict[str, Any]:
    """The full run config of ``cell`` at paired seed index ``seed`` (the ablation's arm config;
    with a task's ``fold_key``, the seed index also picks the fold)."""
    spec = cell.spec
    cfg = spec.arm_config(spec.arms[-1], seed)
    if cell.task.fold_key:
        cfg = apply_overrides(cfg, [f"{cell.task.fold_key}={seed}"])
    return cfg


class _Progress:
    """One line per finished trial: done of total, elapsed, and an ETA over the whole atlas from
    each task's own mean trial time (tasks differ several-fold in cost)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.start = time.perf_counter()
        self.times: dict[str, list[float]] = {}
        self.remaining: dict[str, int] = {}
        self.done = self.total = 0
        self.workers = 1

    def line(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def eta(self) -> float | None:
        every = [t for ts in self.times.values() for t in ts]
        if not every:
            return None
        overall = sum(every) / len(every)
        work = sum(n * (sum(self.times[k]) / len(self.times[k]) if self.times.get(k) else overall)
                   for k, n in self.remaining.items())
        return work / self.workers

    def finished(self, task: str, seconds: float, text: str) -> None:
        self.done += 1
        self.times.setdefault(task, []).append(seconds)
        self.remaining[task] = max(self.remaining.get(task, 1) - 1, 0)
        eta = self.eta()
        elapsed = time.perf_counter() - self.start
        self.line(f"[{self.done}/{self.total}] {text}  (elapsed {_hms(elapsed)}, ETA {_hms(eta) if eta is not None else '?'})")


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def _by_slot(cells: list[Cell]) -> dict[tuple[str, str], Cell]:
    return {(c.task.name, c.arm): c for c in cells}


def _remaining(planned: _study.PlannedStudy) -> dict[str, int]:
    S = planned.optuna.trial.TrialState
    done = {t.user_attrs.get("slot") for t in planned._trials((S.COMPLETE, S.PRUNED))}
    out: dict[str, int] = {}
    for s in planned.slots:
        if s["slot"] not in done:
            out[s["task"]] = out.get(s["task"], 0) + 1
    return out


def _work(cells: list[Cell], planned: _study.PlannedStudy, workers: int, bar: _Progress, interval: float,
          threads: int | None) -> None:
    index = _by_slot(cells)

    def prepare(trial):
        a = trial.user_attrs
        cell = index[(a["task"], a["arm"])]
        return {"config": trial_config(cell, a["seed"]), "metric": cell.task.metric, "device": None,
                "source": cell.spec.base.source,
                "tracking": {"group": planned.name, "run_name": f"{a['label']} seed {a['seed']}",
                             "tags": {"task": a["task"], "arm": a["arm"], "seed": a["seed"]}}}

    def finish(trial, _, result):
        a = trial.user_attrs
        attrs = {k: v for k, v in result.items() if k != "value"}
        what = f"{a['task']} / {a['arm']} seed {a['seed']}"
        if result.get("failure") and result.get("value") is None:
            planned.finish(trial, None, attrs)
            text = f"trial {trial.number}: {what}: FAILED ({result['failure'].strip().splitlines()[-1][:200]})"
        else:
            planned.finish(trial, result["value"], attrs)
            text = f"trial {trial.number}: {what}: {index[(a['task'], a['arm'])].task.metric} {result['value']:.4f}"
        bar.finished(a["task"], float(result.get("wall_time") or 0.0), text)

    _study.run_slots(planned, workers=workers, prepare=prepare, execute=run_trial, finish=finish, threads=threads,
                     interval=interval)


def _observed(cells: list[Cell], planned: _study.PlannedStudy):
    """Per (task, arm): the metric of each completed seed; every seed tried, in any state; the
    failed seeds (tried, never completed)."""
    values: dict[tuple[str, str], dict[int, float]] = {(c.task.name, c.arm): {} for c in cells}
    tried: dict[tuple[str, str], set[int]] = {(c.task.name, c.arm): set() for c in cells}
    for t in planned.completed():
        key = (t.user_attrs["task"], t.user_attrs["arm"])
        if key in values:
            values[key][int(t.user_attrs["seed"])] = float(t.value)
    for t in planned._trials():
        key = (t.user_attrs.get("task"), t.user_attrs.get("arm"))
        if key in tried:
            tried[key].add(int(t.user_attrs["seed"]))
    return values, tried


def _shares(suite: Suite, cells: list[Cell]) -> dict[str, int]:
    """``seeds: auto``: each task's share of the budget: the trials its first look needs (the
    ablation's ``min_budget`` for its arms), plus the rest of the budget in proportion to its arms."""
    from trickbag.ablation.adaptive import min_budget

    arms = {t.name: sum(c.applies for c in cells if c.task.name == t.name) for t in suite.tasks}
    need = {t: min_budget(n, tau=TAU) for t, n in arms.items()}
    spare = suite.budget - sum(need.values())
    if spare < 0:
        raise ValueError(f"budget {suite.budget} is too small for seeds auto: the first look of every task needs "
                         f"{sum(need.values())} trials ({', '.join(f'{t} {n}' for t, n in need.items())})")
    total = sum(arms.values())
    return {t: need[t] + spare * arms[t] // total for t in arms}


def _next_round(suite: Suite, cells: list[Cell], planned: _study.PlannedStudy, bar: _Progress) -> int:
    """``seeds: auto``: per task, the ablation's adaptive design (an anytime-valid sequential test
    per cell against the baseline) within the task's share of the budget (``_shares``); returns
    how many trials were queued."""
    from trickbag.ablation.adaptive import next_trials

    with planned.planning() as pending:  # as the ablation's planner: each round queued once
        if pending:
            return pending
        values, tried = _observed(cells, planned)
        shares = _shares(suite, cells)
        queued = []
        for task in suite.tasks:
            arms = [c for c in cells if c.task.name == task.name and c.applies]
            todo = next_trials([values[(c.task.name, c.arm)] for c in arms], [tried[(c.task.name, c.arm)] for c in arms],
                               budget=shares[task.name], reference=0, tau=TAU)
            queued += [_slot(arms[a], s) for a, s in todo]
        added = planned.add_slots(queued) if queued else 0
    if queued:
        bar.line(f"next round: {len(queued)} trials (cells still undecided, within each task's share of the budget)")
    return added


def cell_records(suite: Suite, cells: list[Cell], planned: _study.PlannedStudy) -> list[dict[str, Any]]:
    """The report's input: one dict per (task, trick) in the agreed shape (see ``write_report``)."""
    values, tried = _observed(cells, planned)
    stds = {}
    for c in cells:
        if c.arm == BASELINE:
            v = list(values[(c.task.name, BASELINE)].values())
            stds[c.task.name] = _sd(v)
    out = []
    for c in cells:
        if c.arm == BASELINE:
            continue
        key = (c.task.name, c.arm)
        base, treated = values[(c.task.name, BASELINE)], values[key]
        seeds = sorted(set(base) & set(treated))
        failed = sorted(tried[key] - set(treated))
        status = "n/a" if not c.applies else ("ok" if seeds else "failed")
        rec = {"task": c.task.name, "trick": c.arm, "metric": c.task.metric, "direction": c.task.direction,
               "status": status, "seeds": seeds, "baseline": {s: base[s] for s in sorted(base)},
               "treated": {s: treated[s] for s in sorted(treated)}, "failed_seeds": failed,
               "baseline_sd": stds.get(c.task.name), "params": c.params or {}}
        if not c.applies:
            rec["reason"] = c.reason
        out.append(rec)
    return out


def _sd(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def collect_cells(out: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read an atlas folder back: its ``atlas.json`` and the cell records from its study (for a
    report of a finished or partial atlas without running anything)."""
    out = Path(out)
    path = out / "atlas.json"
    if not path.exists():
        raise FileNotFoundError(f"{out} is not an atlas folder (no atlas.json)")
    meta = json.loads(path.read_text())
    suite = load_suite(meta["suite_dict"], root=meta.get("suite_root", "."))
    cells = plan_cells(suite, check=False)
    for c in cells:  # the cells found n/a when the atlas was planned (those that did not build)
        reason = meta.get("na", {}).get(f"{c.task.name}|{c.arm}")
        if reason is not None:
            c.spec, c.reason, c.params = None, reason, None
    store = _study.open_storage(_study.existing_storage(meta["storage"], out))
    planned = _study.PlannedStudy(store, meta["study"], "maximize", [], meta["plan_id"])
    planned.open(create=False)
    return meta, cell_records(suite, cells, planned)


def run(
    suite: str | Path | dict | Suite,
    *,
    out: str | Path = "runs/atlas",
    workers: int | None = None,
    storage: str | None = None,
    budget: int | None = None,
    seeds: int | str | None = None,
    study_name: str | None = None,
    threads_per_worker: int | None = None,
    heartbeat_interval: float = 10.0,
    grace: float = 120.0,
    progress: bool = True,
    report: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Run an atlas (every task's baseline and every applicable trick, paired over seeds) and
    write its report; returns the summary (counts, wall time, paths, cells).

    Args:
        suite: the suite file (``configs/atlas_cpu.yaml``), its dict, or a :class:`Suite`.
        out: output folder (``atlas.json``, the SQLite study, the report).
        workers: trials run at once on this machine (default: the suite's ``workers``).
        storage: an Optuna storage URL: SQLite in ``out`` by default; ``postgresql://...`` lets
            the same command on several machines share the atlas, no trial run twice.
        budget: the most trials of the whole atlas: with fixed seeds, a plan larger than it is an
            error; with ``seeds="auto"``, adaptive seeds per cell stop there.
        seeds: paired seeds per cell (overrides the suite's), or ``"auto"``.
        study_name: defaults to a hash of the plan, so the same command resumes its study after
            a kill (finished trials are never run again; the ones in flight run again).
    """
    out = Path(out)
    bar = _Progress(progress)
    start = time.perf_counter()
    if not isinstance(suite, Suite):
        raw_source = suite
        suite = load_suite(suite)
    else:
        raw_source = None
    if seeds is not None:
        if seeds != "auto":
            seeds = int(seeds)
            check_positive_int("seeds", seeds)
        suite.seeds = seeds
    if budget is not None:
        check_positive_int("budget", budget)
        suite.budget = budget
    if suite.seeds == "auto" and suite.budget is None:
        raise ValueError("--seeds auto needs --budget N (the most trials of the whole atlas)")
    workers = workers if workers is not None else suite.workers
    check_positive_int("workers", workers)
    bar.line(f"atlas {suite.name}: {len(suite.tasks)} tasks x {len(suite.tricks)} tricks; checking every cell builds ...")
    cells = plan_cells(suite, log=bar.line)
    applying = [c for c in cells if c.applies]
    if suite.seeds == "auto":
        slots: list[dict[str, Any]] = []
        _shares(suite, cells)  # a budget too small for the first look fails here, before anything is written
    else:
        slots = _fixed_slots(cells, suite.seeds)
        if suite.budget is not None and len(slots) > suite.budget:
            raise ValueError(f"the plan is {len(slots)} trials ({len(applying)} arms x {suite.seeds} seeds), over the "
                             f"budget of {suite.budget}: lower seeds, drop tricks or tasks, or raise --budget")
    url = _study.user_storage_url(storage, out)
    store = _study.open_storage(url) if _study.sqlite_path(url) is None else None
    out.mkdir(parents=True, exist_ok=True)
    remove_orphans(out)
    plan_id = suite.plan_id()
    name = study_name or f"atlas-{plan_id}"
    store = store or _study.open_storage(url)
    planned = _study.PlannedStudy(store, name, "maximize", slots, plan_id, grace=grace)
    planned.open()
    if suite.seeds == "auto":
        planned.slots = planned.stored_slots()
    raw = _raw_suite(raw_source)
    write_json(out / "atlas.json", {"storage": _study.portable_url(url, out), "study": name, "plan_id": plan_id,
                                    "suite": suite.path, "suite_dict": raw[0], "suite_root": raw[1],
                                    "seeds": suite.seeds, "budget": suite.budget,
                                    "na": {f"{c.task.name}|{c.arm}": c.reason for c in cells if not c.applies},
                                    "provenance": provenance()},
               default=str)
    if planned.study.user_attrs.get("started") is None:
        planned.study.set_user_attr("started", time.time())
    counts = planned.counts()
    na = len(cells) - len(applying)
    where = redacted_where(url, out)
    bar.line(f"atlas {name}: {len(applying)} arms ({na} cells n/a), "
             + (f"adaptive seeds within {suite.budget} trials" if suite.seeds == "auto" else
                f"{suite.seeds} seeds = {counts['planned']} trials")
             + f" ({counts['done']} done), {workers} worker(s), storage {where}")
    bar.total = suite.budget if suite.seeds == "auto" else counts["planned"]
    bar.done = counts["done"]
    bar.workers = workers
    bar.start = time.perf_counter()
    while True:
        if suite.seeds == "auto" and not _next_round(suite, cells, planned, bar):
            break
        bar.remaining = _remaining(planned)
        _work(cells, planned, workers, bar, heartbeat_interval, threads_per_worker)
        if suite.seeds != "auto":
            break
    counts = planned.counts()
    wall = time.perf_counter() - start
    if counts["done"] == counts["planned"] and planned.study.user_attrs.get("finished") is None:
        planned.study.set_user_attr("finished", time.time())
    records = cell_records(suite, cells, planned)
    write_json(out / "cells.json", records, default=str)
    meta = json.loads((out / "atlas.json").read_text())  # what re-rendering the report needs, beside the plan
    write_json(out / "atlas.json", {**meta, "command": command, "wall_time_s": wall}, default=str)
    summary: dict[str, Any] = {"out": str(out), "study": name, "storage": url, "counts": counts, "wall_time": wall,
                               "cells": records}
    if report:
        summary["report"] = write_atlas_report(out, suite, records, command=command, wall_time_s=wall, bar=bar)
    return summary


def write_atlas_report(out: Path, suite: Suite, records: list[dict[str, Any]], *, command: str | None = None,
                       wall_time_s: float | None = None, bar: _Progress | None = None) -> dict[str, Any] | None:
    """The report of the other half of the atlas (``trickbag.atlas.report``); None when it is absent."""
    try:
        from trickbag.atlas.report import write_report
    except ImportError:
        if bar:
            bar.line("no report module (trickbag.atlas.report); cells.json holds the cells")
        return None
    if bar:
        bar.line("writing the report ...")
    units = {t.metric: "fraction" for t in suite.tasks if t.metric.endswith("acc")}  # accuracies are fractions
    about = {"tasks": {t.name: {"config": t.source, "metric": t.metric, "about": t.about} for t in suite.tasks},
             "tricks": {k.name: {"card": k.card, "about": k.about} for k in suite.tricks},
             "seeds": suite.seeds, "budget": suite.budget, "provenance": provenance()}
    return write_report(out, records, suite_name=suite.name, metric_units=units, command=command,
                        wall_time_s=wall_time_s, meta=about)


def _raw_suite(source) -> tuple[dict[str, Any] | None, str]:
    """The suite as read (for reading the folder back), and the folder its paths are relative to."""
    if isinstance(source, dict):
        return source, "."
    if source is None:
        return None, "."
    path = Path(source)
    return yaml_read(path), os.path.relpath(path.parent.resolve())  # relative: no machine's paths in the folder


def yaml_read(path: Path) -> dict[str, Any]:
    from trickbag.train.config import yaml_load

    return yaml_load(path.read_text(encoding="utf-8")) or {}


def redacted_where(url: str, out: Path) -> str:
    return "SQLite in " + str(out) if url.startswith("sqlite") else _study.redacted(url)
