"""``trickbag.ablation.run``: arms x seeds as planned trials on Optuna storage, run by local
workers (and any other machine pointed at the same storage), then the report."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from trickbag import _study
from trickbag._atomic import remove_orphans, write_json
from trickbag._provenance import provenance
from trickbag._validate import check_positive_int, unknown
from trickbag.ablation.arms import Arm, make_arms, parse_tricks
from trickbag.ablation.trial import run_trial
from trickbag.train.config import RunConfig, TrickSpec, load_config

__all__ = ["AblationSpec", "run", "spec_from_config"]


@dataclass
class AblationSpec:
    """Everything that defines an ablation (and names its study)."""

    base: RunConfig
    tricks: list[TrickSpec]
    seeds: int = 3
    mode: str = "add-one"
    metric: str = "val_acc"
    direction: str | None = None

    def __post_init__(self) -> None:
        check_positive_int("seeds", self.seeds)
        if self.direction is None:
            self.direction = "minimize" if "loss" in self.metric or "error" in self.metric else "maximize"
        if self.direction not in ("minimize", "maximize"):
            raise ValueError(f"direction must be 'minimize' or 'maximize', got {self.direction!r}")
        self.arms: list[Arm] = make_arms(self.tricks, self.mode)

    def arm_config(self, arm: Arm, seed_index: int) -> dict[str, Any]:
        cfg = self.base.to_dict()
        cfg.pop("ablation", None)
        cfg["tricks"] = [t.to_yaml() for t in list(self.base.tricks) + list(arm.tricks)]
        cfg["train"] = {**cfg["train"], "seed": self.base.train.seed + seed_index, "progress": False,
                        "checkpoint_every_steps": None, "checkpoint_every_epochs": None, "keep_best": 0}
        return cfg

    def slots(self) -> list[dict[str, Any]]:
        """Seed-major order (seed 0 of every arm, then seed 1, ...): warm-up and whatever else
        shares the machine fall on all arms alike, so their times stay comparable."""
        return [
            {"slot": f"{a}:{s}", "arm": a, "label": arm.label, "seed": s}
            for s in range(self.seeds) for a, arm in enumerate(self.arms)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base.to_dict(), "tricks": [t.to_yaml() for t in self.tricks], "seeds": self.seeds,
                "mode": self.mode, "metric": self.metric, "direction": self.direction,
                "arms": [{"label": a.label, "tricks": [t.to_yaml() for t in a.tricks], "reference": a.reference,
                          "effect_of": a.effect_of, "sign": a.sign} for a in self.arms]}

    def plan_id(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]


def spec_from_config(cfg: RunConfig, *, tricks=None, seeds=None, mode=None, metric=None) -> AblationSpec:
    """The ablation of a config: its ``ablation:`` section, overridden by explicit arguments."""
    section = dict(cfg.ablation or {})
    allowed = {"tricks", "seeds", "mode", "metric", "direction", "workers"}
    for key in section:
        if key not in allowed:
            from trickbag._validate import unknown

            raise unknown("key in ablation", key, allowed)
    tricks = tricks if tricks is not None else section.get("tricks")
    if tricks is None:
        raise ValueError("name the tricks to ablate: --tricks a,b,c or ablation.tricks in the config")
    return AblationSpec(
        base=cfg.replace(ablation=None),
        tricks=parse_tricks(tricks),
        seeds=seeds if seeds is not None else section.get("seeds", 3),
        mode=mode or section.get("mode", "add-one"),
        metric=metric or section.get("metric", "val_acc"),
        direction=section.get("direction"),
    )


def _check_arms_build(spec: AblationSpec) -> None:
    """Build every arm's run once (no training) so that a bad config, or a metric that an arm
    does not report, fails before the first trial, not in every trial."""
    from trickbag.ablation.trial import _splits
    from trickbag.train.build import apply_tricks, build_run, check_names

    configs = []
    for arm in spec.arms:
        cfg = load_config(spec.arm_config(arm, 0))
        cfg.source = spec.base.source
        check_names(apply_tricks(cfg)[0])
        configs.append(cfg)
    splits = _splits(configs[0])
    for arm, cfg in zip(spec.arms, configs):
        cfg.train.device = "cpu"
        try:
            built = build_run(cfg, splits=splits)
        except ValueError as exc:
            raise ValueError(f"arm {arm.label!r} does not build: {exc}") from None
        names = built.metric_names()
        if spec.metric not in names:
            error = unknown("metric", spec.metric, names)
            if len(spec.arms) > 1 and arm is not spec.arms[0]:
                error = ValueError(f"arm {arm.label!r} does not report the metric {spec.metric!r}: {error}")
            raise error


class _Progress:
    """A tqdm bar over all trials (done of total, elapsed, ETA) on a terminal, with one line per
    finished trial above it; plain lines carrying the same counts otherwise."""

    def __init__(self, total: int, done: int, enabled: bool):
        self.enabled, self.total, self.done = enabled, total, done
        self.start = time.perf_counter()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc="ablation", unit="trial", file=sys.stderr,
                            dynamic_ncols=True, mininterval=0.5)

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif self.enabled:
            print(text, file=sys.stderr, flush=True)

    def update(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled:
            elapsed = time.perf_counter() - self.start
            print(f"  [{self.done}/{self.total}] elapsed {elapsed:.0f}s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _payload(spec: AblationSpec, trial, devices: list[str]) -> dict[str, Any]:
    arm = spec.arms[trial.user_attrs["arm"]]
    device = devices[trial.number % len(devices)] if devices else None
    return {"config": spec.arm_config(arm, trial.user_attrs["seed"]), "metric": spec.metric, "device": device,
            "source": spec.base.source}


def _devices(base: RunConfig) -> list[str]:
    import torch

    if base.train.device == "auto" and torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return []


def run(
    config: str | Path | dict | RunConfig,
    tricks: str | Sequence[Any] | None = None,
    *,
    seeds: int | None = None,
    mode: str | None = None,
    metric: str | None = None,
    workers: int | None = None,
    storage: str | None = None,
    out: str | Path = "runs/ablation",
    overrides: Sequence[str] = (),
    study_name: str | None = None,
    threads_per_worker: int | None = None,
    heartbeat_interval: float = 10.0,
    grace: float = 120.0,
    progress: bool = True,
    report: bool = True,
) -> dict[str, Any]:
    """Run an ablation and write its report; returns the summary (rows, paths, wall time).

    Args:
        config: the base run config (file, dict or RunConfig); its ``ablation:`` section
            supplies defaults for the arguments below.
        tricks: the tricks to ablate (``"mixup:alpha=0.2,cutout"`` or a list).
        seeds: seeds per arm (paired across arms: seed ``i`` gives every arm the same initial
            weights and data order).
        mode: ``"add-one"`` (baseline + each trick), ``"leave-one-out"`` or ``"grid"``.
        metric: the final-epoch metric compared (``val_acc`` by default; ``*loss*`` minimises).
        workers: trials run at once on this machine (several can share a GPU).
        storage: an Optuna storage URL (SQLite in ``out`` by default; ``postgresql://...`` to
            share the trials between machines running the same command).
        out: output folder (report, plots, ``ablation.json``, the SQLite study).
        overrides: ``key=value`` overrides of the base config.
        study_name: defaults to a hash of the plan, so the same command resumes its study.
        heartbeat_interval, grace: seconds between heartbeats, and without one before a trial
            of another machine is presumed dead (a dead process on this machine is noticed at once).
    """
    out = Path(out)
    base = load_config(config, list(overrides))
    section = base.ablation or {}
    spec = spec_from_config(base, tricks=tricks, seeds=seeds, mode=mode, metric=metric)
    workers = workers if workers is not None else section.get("workers", 1)  # 0 is an error, not "default"
    check_positive_int("workers", workers)
    _check_arms_build(spec)
    url = _study.user_storage_url(storage, out)
    # a server is reached before anything is written; an SQLite file needs its folder first
    store = _study.open_storage(url) if _study.sqlite_path(url) is None else None
    out.mkdir(parents=True, exist_ok=True)
    remove_orphans(out)
    name = study_name or f"ablation-{spec.plan_id()}"
    store = store or _study.open_storage(url)
    planned = _study.PlannedStudy(store, name, spec.direction, spec.slots(), spec.plan_id(), grace=grace)
    planned.open()
    # SQLite inside the folder is recorded relative to it: a moved or copied folder reads its own
    write_json(out / "ablation.json", {"storage": _study.portable_url(url, out), "study": name,
                                       "spec": spec.to_dict(), "provenance": provenance()}, default=str)
    if planned.study.user_attrs.get("started") is None:
        planned.study.set_user_attr("started", time.time())
    planned.study.set_user_attr(f"workers:{_study.HOST}", workers)
    counts = planned.counts()
    bar = _Progress(counts["planned"], counts["done"], progress)
    bar.line(f"ablation {name}: {len(spec.arms)} arms x {spec.seeds} seeds = {counts['planned']} trials "
             f"({counts['done']} done), {workers} worker(s), storage {url.split('@')[-1]}")
    start = time.perf_counter()
    try:
        _work(spec, planned, workers, bar, heartbeat_interval, threads_per_worker)
    finally:
        bar.close()
    counts = planned.counts()
    summary: dict[str, Any] = {"out": str(out), "study": name, "storage": url, "counts": counts,
                               "metric": spec.metric, "wall_time": time.perf_counter() - start}
    if counts["done"] == counts["planned"] and planned.study.user_attrs.get("finished") is None:
        planned.study.set_user_attr("finished", time.time())
    if report:
        from trickbag.ablation.report import render

        summary.update(render(out))
    return summary


def _work(spec: AblationSpec, planned: _study.PlannedStudy, workers: int, bar: _Progress, interval: float,
          threads: int | None) -> None:
    devices = _devices(spec.base)
    _study.run_slots(planned, workers=workers, prepare=lambda trial: _payload(spec, trial, devices), execute=run_trial,
                     finish=lambda trial, _, result: _finish(spec, planned, trial, result, bar), threads=threads,
                     interval=interval)


def _finish(spec: AblationSpec, planned: _study.PlannedStudy, trial, result: dict[str, Any], bar: _Progress) -> None:
    attrs = {k: v for k, v in result.items() if k != "value"}
    label, seed = trial.user_attrs["label"], trial.user_attrs["seed"]
    if result.get("failure") and result.get("value") is None:
        planned.finish(trial, None, attrs)
        first = result["failure"].strip().splitlines()[-1][:200]
        bar.line(f"trial {trial.number}: {label} seed {seed}: FAILED ({first})")
    else:
        planned.finish(trial, result["value"], attrs)
        bar.line(f"trial {trial.number}: {label} seed {seed}: {spec.metric} {result['value']:.4f} "
                 f"({result.get('train_time', 0.0):.1f}s)")
    bar.update()


def load_spec(out: str | Path) -> tuple[dict[str, Any], AblationSpec]:
    """The ablation recorded in ``out``: its ``ablation.json`` (with ``storage`` resolved to the
    URL to open: the folder's own SQLite file, which must exist) and its spec."""
    path = Path(out) / "ablation.json"
    if not path.exists():
        raise FileNotFoundError(f"{out} is not an ablation folder (no ablation.json)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); it may have been cut short") from None
    meta["storage"] = _study.existing_storage(meta["storage"], Path(out))
    s = meta["spec"]
    spec = AblationSpec(load_config(s["base"]), parse_tricks(s["tricks"]), s["seeds"], s["mode"], s["metric"], s["direction"])
    return meta, spec


