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
from trickbag.ablation.stats import TAU
from trickbag.ablation.trial import run_trial
from trickbag.train.config import RunConfig, TrickSpec, load_config

__all__ = ["AblationSpec", "direction_of", "run", "spec_from_config"]


@dataclass
class AblationSpec:
    """Everything that defines an ablation (and names its study).

    ``seeds`` is a number of paired seeds per arm, or ``"auto"``: adaptive seeds within
    ``budget`` trials (``trickbag.ablation.adaptive``). ``direction`` is ``"maximize"`` or
    ``"minimize"`` (``"max"``/``"min"`` accepted), by default :func:`trickbag.loop.metric_mode` of the
    metric's name. ``vary_data``: seed ``i`` also draws the data (``data.split_seed + i``: the
    validation split, the training subset, the label-noise draw), still the same for every arm.
    ``failures``: how a failed trial enters the comparison: ``"exclude"`` (compared on the seeds
    that finished; an arm with failures is never called "helps") or ``"worst"`` (intention to
    treat: it scores the worst value any trial of the ablation reached). ``resolution``: the step
    the metric moves in (an accuracy over N examples: 1/N); by default detected from the values."""

    base: RunConfig
    tricks: list[TrickSpec]
    seeds: int | str = 3
    mode: str = "add-one"
    metric: str = "val_acc"
    direction: str | None = None
    budget: int | None = None
    alpha: float = 0.05
    tau: float = TAU
    vary_data: bool = False
    failures: str = "exclude"
    resolution: float | None = None

    def __post_init__(self) -> None:
        if self.seeds != "auto":
            check_positive_int("seeds", self.seeds)
        self.direction = direction_of(self.metric, self.direction)
        if not isinstance(self.vary_data, bool):
            raise ValueError(f"vary_data must be true or false, got {self.vary_data!r}")
        if self.failures not in FAILURES:
            raise ValueError(f"failures must be one of {', '.join(FAILURES)}, got {self.failures!r}")
        if self.resolution is not None and not (isinstance(self.resolution, (int, float))
                                                and not isinstance(self.resolution, bool) and self.resolution >= 0):
            raise ValueError(f"resolution must be a number >= 0 (the step the metric moves in), got {self.resolution!r}")
        self.arms: list[Arm] = make_arms(self.tricks, self.mode)
        if self.adaptive:
            from trickbag.ablation.adaptive import min_budget

            if self.mode == "factorial":
                raise ValueError("--seeds auto works with add-one, leave-one-out and grid; a factorial screening "
                                 "takes a fixed number of seeds (--seeds N)")
            need = min_budget(len(self.arms), alpha=self.alpha, tau=self.tau)
            if self.budget is None:
                raise ValueError(f"--seeds auto needs --budget N (trials in all; at least {need} for "
                                 f"{len(self.arms)} arms)")
            check_positive_int("budget", self.budget)
            if self.budget < need:
                raise ValueError(f"budget {self.budget} is too small: the first look needs {need} trials "
                                 f"({len(self.arms)} arms x {need // len(self.arms)} seeds)")
        elif self.budget is not None:
            raise ValueError(f"budget {self.budget} is only for --seeds auto (got seeds={self.seeds!r})")

    @property
    def adaptive(self) -> bool:
        return self.seeds == "auto"

    def arm_config(self, arm: Arm, seed_index: int) -> dict[str, Any]:
        cfg = self.base.to_dict()
        cfg.pop("ablation", None)
        cfg["tricks"] = [t.to_yaml() for t in list(self.base.tricks) + list(arm.tricks)]
        cfg["train"] = {**cfg["train"], "seed": self.base.train.seed + seed_index, "progress": False,
                        "checkpoint_every_steps": None, "checkpoint_every_epochs": None, "keep_best": 0}
        if self.vary_data:  # seed i draws its own data too, the same for every arm (still paired)
            data = cfg["data"]
            data["split_seed"] = self.base.data.split_seed + seed_index
            if isinstance(data.get("label_noise"), dict) and "seed" in data["label_noise"]:
                data["label_noise"] = {**data["label_noise"], "seed": data["label_noise"]["seed"] + seed_index}
        return cfg

    def slot(self, arm: int, seed: int) -> dict[str, Any]:
        return {"slot": f"{arm}:{seed}", "arm": arm, "label": self.arms[arm].label, "seed": seed}

    def slots(self) -> list[dict[str, Any]]:
        """Seed-major order (seed 0 of every arm, then seed 1, ...): warm-up and whatever else
        shares the machine fall on all arms alike, so their times stay comparable. An adaptive
        ablation plans its slots round by round (none up front)."""
        if self.adaptive:
            return []
        return [self.slot(a, s) for s in range(self.seeds) for a in range(len(self.arms))]

    def to_dict(self) -> dict[str, Any]:
        out = {"base": self.base.to_dict(), "tricks": [t.to_yaml() for t in self.tricks], "seeds": self.seeds,
               "mode": self.mode, "metric": self.metric, "direction": self.direction,
               "arms": [{"label": a.label, "tricks": [t.to_yaml() for t in a.tricks], "reference": a.reference,
                         "effect_of": a.effect_of, "sign": a.sign} for a in self.arms]}
        if self.adaptive:  # only then, so that fixed plans keep the ids (and studies) they had
            out.update(budget=self.budget, alpha=self.alpha, tau=self.tau)
        if self.vary_data:  # likewise: only when on
            out["vary_data"] = True
        if self.failures != "exclude":
            out["failures"] = self.failures
        if self.resolution is not None:
            out["resolution"] = self.resolution
        return out

    def plan_id(self) -> str:
        """The plan's hash: what the trials are (analysis options, ``failures`` and ``resolution``, are not)."""
        plan = {k: v for k, v in self.to_dict().items() if k not in ANALYSIS}
        return hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AblationSpec:
        """The spec of ``to_dict()`` (as saved in ``ablation.json`` and ``results.json``)."""
        extra = {k: d[k] for k in ("budget", "alpha", "tau", "vary_data", *ANALYSIS) if k in d}
        return cls(load_config(d["base"]), parse_tricks(d["tricks"]), d["seeds"], d["mode"], d["metric"],
                   d["direction"], **extra)


FAILURES = ("exclude", "worst")
#: Spec fields that change how trials are analysed, not which trials run (so not the study).
ANALYSIS = ("failures", "resolution")


def direction_of(metric: str, direction: str | None = None) -> str:
    """``"maximize"`` or ``"minimize"``: ``direction`` when given (``max``/``min`` too), else the one
    rule of the whole package, :func:`trickbag.loop.metric_mode` (losses, errors, NLL, ECE and
    perplexity are minimised; anything else is maximised).

    Example:
        >>> direction_of("val_nll"), direction_of("val_acc"), direction_of("val_acc", "min")
        ('minimize', 'maximize', 'minimize')
    """
    from trickbag.loop import metric_mode

    named = {"max": "max", "maximize": "max", "min": "min", "minimize": "min"}
    if direction is not None and direction not in named:
        raise ValueError(f"direction must be 'max' or 'min' (or 'maximize', 'minimize'), got {direction!r}")
    mode = metric_mode(metric, named[direction] if direction is not None else None)
    return "maximize" if mode == "max" else "minimize"


def spec_from_config(cfg: RunConfig, *, tricks=None, seeds=None, mode=None, metric=None, budget=None,
                     direction=None, failures=None, vary_data=None) -> AblationSpec:
    """The ablation of a config: its ``ablation:`` section, overridden by explicit arguments."""
    section = dict(cfg.ablation or {})
    allowed = {"tricks", "seeds", "mode", "metric", "direction", "workers", "budget", "vary_data", "failures",
               "resolution"}
    for key in section:
        if key not in allowed:
            from trickbag._validate import unknown

            raise unknown("key in ablation", key, allowed)
    tricks = tricks if tricks is not None else section.get("tricks")
    if tricks is None:
        raise ValueError("name the tricks to ablate: --tricks a,b,c or ablation.tricks in the config")
    seeds = seeds if seeds is not None else section.get("seeds", 3)
    if budget is None and seeds == "auto":  # a config's budget belongs to its adaptive seeds only
        budget = section.get("budget")
    return AblationSpec(
        base=cfg.replace(ablation=None),
        tricks=parse_tricks(tricks),
        seeds=seeds,
        mode=mode or section.get("mode", "add-one"),
        metric=metric or section.get("metric", "val_acc"),
        direction=direction if direction is not None else section.get("direction"),
        budget=budget,
        vary_data=vary_data if vary_data is not None else section.get("vary_data", False),
        failures=failures if failures is not None else section.get("failures", "exclude"),
        resolution=section.get("resolution"),
    )


def _check_arms_build(spec: AblationSpec) -> None:
    """Build every arm's run once (no training) so that a bad config, or a metric that an arm
    does not report, fails before the first trial, not in every trial."""
    from trickbag.ablation.trial import _splits
    from trickbag.train.build import apply_tricks, build_run, check_names
    from trickbag.train.callbacks.base import check_compatible

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
            check_compatible(built.trainer.callbacks)  # tricks that would fight (two lr owners ...) fail here too
        except ValueError as exc:
            raise ValueError(f"arm {arm.label!r} does not build: {exc}") from None
        names = built.metric_names()
        if spec.metric not in names:
            error = unknown("metric", spec.metric, names)
            if len(spec.arms) > 1 and arm is not spec.arms[0]:
                error = ValueError(f"arm {arm.label!r} does not report the metric {spec.metric!r}: {error}")
            raise error


class _Progress:
    """Progress from the first second: plain lines while data loads and arms build, then a tqdm
    bar over the trials (done of total, elapsed, ETA) on a terminal with one line per finished
    trial above it, or plain lines carrying the same counts and ETA otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.total = self.done = self.session_done = 0
        self.bound = ""  # "<=" when the total is a budget, not a plan
        self.start = time.perf_counter()
        self.bar = None

    def begin(self, total: int, done: int, bound: str = "") -> None:
        self.total, self.done, self.bound = total, done, bound
        self.start = time.perf_counter()
        if self.enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc="ablation", unit="trial", file=sys.stderr,
                            dynamic_ncols=True, mininterval=0.5)

    def set_total(self, total: int) -> None:
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif self.enabled:
            print(text, file=sys.stderr, flush=True)

    def started(self, text: str) -> None:
        """Trials starting, until the first one finishes (after that the finished lines and ETA show
        that work goes on)."""
        if self.session_done == 0:
            self.line(f"  started {text}")

    def finished(self, text: str) -> None:
        self.done += 1
        self.session_done += 1
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
            self.bar.update(1)
            return
        if self.enabled:
            elapsed = time.perf_counter() - self.start
            eta = elapsed / self.session_done * max(self.total - self.done, 0)
            print(f"[{self.done}/{self.bound}{self.total}] {text}  (elapsed {elapsed:.0f}s, ETA {self.bound}{eta:.0f}s)",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _payload(spec: AblationSpec, trial, devices: list[str], study: str | None = None) -> dict[str, Any]:
    arm = spec.arms[trial.user_attrs["arm"]]
    device = devices[trial.number % len(devices)] if devices else None
    seed = trial.user_attrs["seed"]
    tracking = {"group": study, "run_name": f"{arm.label} seed {seed}", "tags": {"arm": arm.label, "seed": seed}}
    return {"config": spec.arm_config(arm, seed), "metric": spec.metric, "device": device,
            "source": spec.base.source, "tracking": tracking}


def _devices(base: RunConfig) -> list[str]:
    import torch

    if base.train.device == "auto" and torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return []


def run(
    config: str | Path | dict | RunConfig,
    tricks: str | Sequence[Any] | None = None,
    *,
    seeds: int | str | None = None,
    budget: int | None = None,
    mode: str | None = None,
    metric: str | None = None,
    direction: str | None = None,
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
            weights and data order), or ``"auto"``: adaptive seeds, added to the arms still
            undecided by an anytime-valid sequential test until each is decided or ``budget``
            trials have run.
        budget: the most trials (all arms together) of ``seeds="auto"``.
        mode: ``"add-one"`` (baseline + each trick), ``"leave-one-out"``, ``"grid"`` or
            ``"factorial"`` (a resolution IV fractional factorial screening).
        metric: the final-epoch metric compared (``val_acc`` by default).
        direction: ``"max"`` or ``"min"``; by default :func:`trickbag.loop.metric_mode` of the
            metric's name (losses, errors, NLL, ECE and perplexity are minimised).
        workers: trials run at once on this machine (several can share a GPU).
        storage: an Optuna storage URL (SQLite in ``out`` by default; ``postgresql://...`` to
            share the trials between machines running the same command).
        out: output folder (report, plots, ``ablation.json``, ``results.json``, the SQLite study).
        overrides: ``key=value`` overrides of the base config.
        study_name: defaults to a hash of the plan, so the same command resumes its study.
        heartbeat_interval, grace: seconds between heartbeats, and without one before a trial
            of another machine is presumed dead (a dead process on this machine is noticed at once).
    """
    out = Path(out)
    bar = _Progress(progress)
    base = load_config(config, list(overrides))
    section = base.ablation or {}
    spec = spec_from_config(base, tricks=tricks, seeds=seeds, mode=mode, metric=metric, budget=budget,
                            direction=direction)
    workers = workers if workers is not None else section.get("workers", 1)  # 0 is an error, not "default"
    check_positive_int("workers", workers)
    bar.line(f"loading {base.data.name} and building the {len(spec.arms)} arms once (a bad arm fails here) ...")
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
    if spec.adaptive:
        planned.slots = planned.stored_slots()
    # SQLite inside the folder is recorded relative to it: a moved or copied folder reads its own
    write_json(out / "ablation.json", {"storage": _study.portable_url(url, out), "study": name,
                                       "spec": spec.to_dict(), "provenance": provenance()}, default=str)
    if planned.study.user_attrs.get("started") is None:
        planned.study.set_user_attr("started", time.time())
    planned.study.set_user_attr(f"workers:{_study.HOST}", workers)
    counts = planned.counts()
    where = url.split("@")[-1] if not url.startswith("sqlite") else "SQLite in " + str(out)
    if spec.adaptive:
        bar.line(f"ablation {name}: {len(spec.arms)} arms, adaptive seeds within a budget of {spec.budget} trials "
                 f"({counts['done']} done), {workers} worker(s), storage {where}")
        bar.begin(spec.budget, counts["done"], bound="<=")
    else:
        bar.line(f"ablation {name}: {len(spec.arms)} arms x {spec.seeds} seeds = {counts['planned']} trials "
                 f"({counts['done']} done), {workers} worker(s), storage {where}")
        bar.begin(counts["planned"], counts["done"])
    start = time.perf_counter()
    try:
        while True:
            _work(spec, planned, workers, bar, heartbeat_interval, threads_per_worker)
            if not spec.adaptive or not _next_round(spec, planned, bar):
                break
    finally:
        bar.close()
    counts = planned.counts()
    summary: dict[str, Any] = {"out": str(out), "study": name, "storage": url, "counts": counts,
                               "metric": spec.metric, "wall_time": time.perf_counter() - start}
    if counts["done"] == counts["planned"] and planned.study.user_attrs.get("finished") is None:
        planned.study.set_user_attr("finished", time.time())
    if report:
        from trickbag.ablation.report import render

        bar.line("writing the report ...")
        summary.update(render(out))
    return summary


def _observed(spec: AblationSpec, planned: _study.PlannedStudy) -> tuple[list[dict[int, float]], list[set[int]]]:
    """Per arm: the metric of each completed seed, and every seed tried (in any state)."""
    values: list[dict[int, float]] = [{} for _ in spec.arms]
    attempted: list[set[int]] = [set() for _ in spec.arms]
    for t in planned.completed():
        values[t.user_attrs["arm"]][t.user_attrs["seed"]] = float(t.value)
    for slot in planned.stored_slots():
        attempted[slot["arm"]].add(slot["seed"])
    return values, attempted


def _next_round(spec: AblationSpec, planned: _study.PlannedStudy, bar: _Progress) -> int:
    """Queue the adaptive design's next trials; returns how many (0: every arm decided, or the budget spent)."""
    from trickbag.ablation.adaptive import next_trials

    values, attempted = _observed(spec, planned)
    reference = next(i for i, a in enumerate(spec.arms) if a.reference)
    todo = next_trials(values, attempted, budget=spec.budget, reference=reference, alpha=spec.alpha, tau=spec.tau)
    if not todo:
        return 0
    queued = planned.add_slots([spec.slot(a, s) for a, s in todo])
    if not any(attempted):
        bar.line(f"first round: {len(todo)} trials ({len(todo) // len(spec.arms)} seeds per arm, the fewest at "
                 f"which the sequential test can decide)")
    else:
        arms = [spec.arms[a].label for a in sorted({a for a, _ in todo if a != reference})]
        bar.line(f"next round: {len(todo)} trials, one more seed for {', '.join(arms)} (still undecided)")
    bar.set_total(spec.budget)
    return queued or len(todo)


def _work(spec: AblationSpec, planned: _study.PlannedStudy, workers: int, bar: _Progress, interval: float,
          threads: int | None) -> None:
    devices = _devices(spec.base)

    def prepare(trial):
        bar.started(f"{trial.user_attrs['label']} seed {trial.user_attrs['seed']}")
        return _payload(spec, trial, devices, planned.name)

    _study.run_slots(planned, workers=workers, prepare=prepare, execute=run_trial,
                     finish=lambda trial, _, result: _finish(spec, planned, trial, result, bar), threads=threads,
                     interval=interval)


def _finish(spec: AblationSpec, planned: _study.PlannedStudy, trial, result: dict[str, Any], bar: _Progress) -> None:
    attrs = {k: v for k, v in result.items() if k != "value"}
    label, seed = trial.user_attrs["label"], trial.user_attrs["seed"]
    if result.get("failure") and result.get("value") is None:
        planned.finish(trial, None, attrs)
        first = result["failure"].strip().splitlines()[-1][:200]
        bar.finished(f"trial {trial.number}: {label} seed {seed}: FAILED ({first})")
    else:
        planned.finish(trial, result["value"], attrs)
        bar.finished(f"trial {trial.number}: {label} seed {seed}: {spec.metric} {result['value']:.4f} "
                     f"({result.get('train_time', 0.0):.1f}s)")


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
    return meta, AblationSpec.from_dict(meta["spec"])


