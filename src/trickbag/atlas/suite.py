"""An atlas suite: tasks (base configs) x tricks, read from YAML and checked at the boundary.

The file (``configs/atlas_cpu.yaml`` is the committed one)::

    name: atlas_cpu
    seeds: 3                 # paired seeds per cell, or "auto" (adaptive, needs budget)
    budget: 300              # the most trials of the whole atlas (optional with fixed seeds)
    metric: test_acc         # default metric of every task
    workers: 2               # default of --workers
    tasks:
      fmnist_clean:
        config: atlas/fmnist_clean.yaml      # relative to the suite file
        overrides: [train.epochs=3]          # key=value, as on the command line
        metric: test_acc                     # optional, else the suite's
        fold_key: data.options.fold          # optional: seed i also sets this key to i (folds as seeds)
        about: why this base is sound
    tricks:
      label_smoothing:
        tricks: [{label_smoothing: {smoothing: 0.1}}]   # catalog tricks added to the base
        set: [model.dropout=0.2]                        # and/or config overrides
        tasks: [fmnist_clean, mr]                       # default: every task; the others are "n/a"
        per_task: {mr: {tricks: [...], set: [...]}}     # a task's own parameters
        about: what lr it uses, and why

Every name is checked when the file is read: an unknown key, task or catalog trick is one
``ValueError`` line naming it and what is valid.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trickbag import catalog
from trickbag._validate import check_positive_int, unknown
from trickbag.train.config import RunConfig, TrickSpec, load_config, parse_trick, yaml_load

__all__ = ["Task", "AtlasTrick", "Suite", "load_suite"]

_SUITE_KEYS = ("name", "seeds", "budget", "metric", "workers", "tasks", "tricks", "about")
_TASK_KEYS = ("config", "overrides", "metric", "direction", "fold_key", "about")
_TRICK_KEYS = ("tricks", "set", "tasks", "per_task", "about", "card")
_PER_TASK_KEYS = ("tricks", "set", "about")


@dataclass
class Task:
    """One task of the atlas: a base config (the baseline) and the metric its cells compare."""

    name: str
    config: RunConfig
    metric: str
    direction: str
    fold_key: str | None = None
    about: str = ""
    source: str = ""  # the config file, as the suite names it


@dataclass
class AtlasTrick:
    """One trick of the atlas: catalog tricks and/or config overrides added to a task's base."""

    name: str
    tricks: list[TrickSpec] = field(default_factory=list)
    set: list[str] = field(default_factory=list)
    tasks: list[str] | None = None  # None: every task
    per_task: dict[str, dict[str, Any]] = field(default_factory=dict)
    about: str = ""
    card: str | None = None  # the catalog card whose paper claim the report quotes

    def applies(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks

    def for_task(self, task: str) -> tuple[list[TrickSpec], list[str]]:
        """The tricks and overrides this trick adds to ``task``'s base."""
        own = self.per_task.get(task, {})
        tricks = _tricks(own["tricks"], f"trick {self.name!r} on task {task!r}") if "tricks" in own else self.tricks
        return tricks, list(own.get("set", self.set))

    def params(self, task: str) -> dict[str, Any]:
        tricks, sets = self.for_task(task)
        out: dict[str, Any] = {t.name: dict(t.params) for t in tricks}
        if sets:
            out["set"] = sets
        return out


@dataclass
class Suite:
    name: str
    tasks: list[Task]
    tricks: list[AtlasTrick]
    seeds: int | str = 3
    budget: int | None = None
    workers: int = 1
    about: str = ""
    path: str | None = None

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise unknown("task", name, [t.name for t in self.tasks])

    def to_dict(self) -> dict[str, Any]:
        """Everything that defines the atlas's trials (the resolved configs included), for its plan id."""
        return {
            "name": self.name, "seeds": self.seeds, "budget": self.budget,
            "tasks": [{"name": t.name, "config": t.config.to_dict(), "metric": t.metric, "direction": t.direction,
                       "fold_key": t.fold_key} for t in self.tasks],
            "tricks": [{"name": k.name, "tricks": [t.to_yaml() for t in k.tricks], "set": k.set, "tasks": k.tasks,
                        "per_task": k.per_task} for k in self.tricks],
        }

    def plan_id(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]


def _check_keys(where: str, raw: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping of {', '.join(allowed)}; got {raw!r}")
    for key in raw:
        if key not in allowed:
            raise unknown(f"key in {where}", key, allowed)
    return raw


def _tricks(raw: Any, where: str) -> list[TrickSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"{where}: tricks must be a list such as [label_smoothing, {{mixup: {{alpha: 0.2}}}}]; got {raw!r}")
    out = []
    for item in raw:
        spec = parse_trick(item)
        catalog.get(spec.name)  # an unknown name fails here, with the closest ones
        out.append(spec)
    return out


def _overrides(raw: Any, where: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(x, str) and "=" in x for x in raw):
        raise ValueError(f"{where} must be a list of key=value overrides (e.g. [model.dropout=0.2]); got {raw!r}")
    return list(raw)


def _direction(metric: str, given: str | None, where: str) -> str:
    from trickbag.loop import metric_mode

    if given is None:
        return "maximize" if metric_mode(metric) == "max" else "minimize"
    if given not in ("maximize", "minimize"):
        raise ValueError(f"{where}: direction must be 'maximize' or 'minimize', got {given!r}")
    return given


def load_suite(source: str | Path | dict[str, Any], *, root: str | Path | None = None) -> Suite:
    """Read and check a suite (a YAML file or its dict). Task config paths are relative to the
    suite file (or ``root`` for a dict)."""
    path = None
    if isinstance(source, dict):
        raw, base_dir = source, Path(root or ".")
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"suite file not found: {path}")
        try:
            raw = yaml_load(path.read_text(encoding="utf-8")) or {}
        except Exception as exc:
            raise ValueError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        base_dir = path.parent
    _check_keys("the suite", raw, _SUITE_KEYS)
    for key in ("tasks", "tricks"):
        if not raw.get(key):
            raise ValueError(f"the suite names no {key}: give a mapping '{key}:' with at least one entry")
    seeds = raw.get("seeds", 3)
    if seeds != "auto":
        if isinstance(seeds, str) and seeds.isdigit():
            seeds = int(seeds)
        check_positive_int("seeds", seeds)
    budget = raw.get("budget")
    if budget is not None:
        check_positive_int("budget", budget)
    workers = raw.get("workers", 1)
    check_positive_int("workers", workers)
    metric = raw.get("metric", "val_acc")

    tasks: list[Task] = []
    for name, t in _check_keys("tasks", raw["tasks"], tuple(raw["tasks"])).items():
        where = f"task {name!r}"
        t = _check_keys(where, t, _TASK_KEYS)
        if "config" not in t:
            raise ValueError(f"{where} names no config: give config: FILE.yaml (relative to the suite)")
        cfg_path = Path(t["config"])
        if not cfg_path.is_absolute():
            cfg_path = base_dir / cfg_path
        try:
            cfg = load_config(cfg_path, _overrides(t.get("overrides"), f"{where}: overrides"))
        except (ValueError, FileNotFoundError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        task_metric = t.get("metric", metric)
        fold_key = t.get("fold_key")
        if fold_key is not None:
            try:
                load_config(cfg.to_dict(), [f"{fold_key}=0"])
            except ValueError as exc:
                raise ValueError(f"{where}: fold_key {fold_key!r} is not a config key: {exc}") from None
        tasks.append(Task(name, cfg, task_metric, _direction(task_metric, t.get("direction"), where), fold_key,
                          str(t.get("about", "")).strip(), str(t["config"])))
    names = [t.name for t in tasks]

    tricks: list[AtlasTrick] = []
    for name, k in _check_keys("tricks", raw["tricks"], tuple(raw["tricks"])).items():
        where = f"trick {name!r}"
        if name == "baseline":
            raise ValueError("'baseline' is every task's reference arm; name the trick otherwise")
        k = _check_keys(where, k if k is not None else {}, _TRICK_KEYS)
        specs = _tricks(k.get("tricks"), where)
        sets = _overrides(k.get("set"), f"{where}: set")
        if not specs and not sets and not k.get("per_task"):
            raise ValueError(f"{where} adds nothing: give tricks: [...] and/or set: [key=value]")
        applies = k.get("tasks")
        if applies is not None:
            if not isinstance(applies, list):
                raise ValueError(f"{where}: tasks must be a list of task names; got {applies!r}")
            for task in applies:
                if task not in names:
                    raise unknown(f"task in {where}", task, names)
        per_task = k.get("per_task") or {}
        for task, own in _check_keys(f"{where}: per_task", per_task, tuple(names)).items():
            _check_keys(f"{where}: per_task {task!r}", own, _PER_TASK_KEYS)
            _tricks(own.get("tricks"), f"{where} on task {task!r}")
            _overrides(own.get("set"), f"{where} on task {task!r}: set")
        card = k.get("card") or (specs[0].name if specs else None)
        if card is not None:
            catalog.get(card)
        tricks.append(AtlasTrick(name, specs, sets, applies, per_task, str(k.get("about", "")).strip(), card))
    if seeds == "auto" and budget is None:
        raise ValueError("seeds: auto needs a budget (the most trials of the whole atlas)")
    return Suite(str(raw.get("name") or (path.stem if path else "atlas")), tasks, tricks, seeds, budget, workers,
                 str(raw.get("about", "")).strip(), str(path) if path else None)
