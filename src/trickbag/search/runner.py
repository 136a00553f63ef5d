"""``trickbag search``: random (or TPE) search on a log scale, coarse to fine, with pruning,
selection on the validation split, and honest warnings; trials on Optuna storage."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trickbag import _study
from trickbag._atomic import remove_orphans, write_json, write_text
from trickbag._provenance import provenance
from trickbag._validate import check_choice, check_positive_int, unknown
from trickbag.report.page import fmt
from trickbag.search.space import Param, apply_params, load_space
from trickbag.search.trial import run_search_trial
from trickbag.train.config import RunConfig, load_config

__all__ = ["run", "narrow", "border_warnings", "noise_warning", "winners_curse_warning", "SEARCH_KEYS"]

SEARCH_KEYS = {"space", "trials", "stages", "sampler", "metric", "direction", "coarse_epochs", "fine_trials",
               "fine_epochs", "pruner", "top_fraction", "noise_seeds", "workers", "seed"}


def _sample(params: list[Param], n: int, seed: int) -> list[dict[str, Any]]:
    """Random search points, drawn once from a seeded generator: the plan is reproducible and
    every worker sees the same one."""
    rng = np.random.default_rng(seed)
    points = []
    for _ in range(n):
        point: dict[str, Any] = {}
        for p in params:
            if p.kind == "choice":
                point[p.key] = p.choices[int(rng.integers(len(p.choices)))]
                continue
            lo, hi = float(p.low), float(p.high)
            u = rng.uniform(math.log(lo), math.log(hi)) if p.log else rng.uniform(lo, hi)
            v = math.exp(u) if p.log else u
            point[p.key] = int(min(max(round(v), p.low), p.high)) if p.kind == "int" else float(v)
        points.append(point)
    return points


def narrow(params: list[Param], trials: list[tuple[dict[str, Any], float]], *, maximize: bool,
           top_fraction: float = 0.25) -> list[Param]:
    """The fine stage's ranges: around the best ``top_fraction`` of the coarse trials (at least
    three), widened on each side by a quarter of their own spread (at least 2% of the full
    range; log scale for log parameters), never outside the coarse range; choices keep the
    values the best trials used.

    Example:
        >>> p = Param("lr", "optimizer.lr", "float", 1e-5, 1.0, True)
        >>> fine = narrow([p], [({"lr": 1e-3}, 0.9), ({"lr": 3e-3}, 0.92), ({"lr": 1e-4}, 0.5), ({"lr": 0.5}, 0.1)],
        ...               maximize=True)
        >>> 1e-5 <= fine[0].low < 1e-3 and 3e-3 < fine[0].high <= 1.0
        True
    """
    ranked = sorted(trials, key=lambda t: -t[1] if maximize else t[1])
    top = ranked[: max(3, math.ceil(top_fraction * len(ranked)))]
    out = []
    for p in params:
        values = [t[0][p.key] for t in top if p.key in t[0]]
        if not values:
            out.append(p)
            continue
        if p.kind == "choice":
            kept = tuple(c for c in p.choices if c in values)
            out.append(Param(p.key, p.path, "choice", choices=kept or p.choices))
            continue
        f = (lambda v: math.log(v)) if p.log else (lambda v: float(v))
        g = (lambda v: math.exp(v)) if p.log else (lambda v: v)
        full_lo, full_hi = f(p.low), f(p.high)
        span = full_hi - full_lo
        lo, hi = min(f(v) for v in values), max(f(v) for v in values)
        margin = max(0.25 * (hi - lo), 0.02 * span)
        lo, hi = max(full_lo, lo - margin), min(full_hi, hi + margin)
        if hi - lo < 0.05 * span:
            mid = (lo + hi) / 2
            lo, hi = max(full_lo, mid - 0.025 * span), min(full_hi, mid + 0.025 * span)
        new_lo, new_hi = g(lo), g(hi)
        if p.kind == "int":
            new_lo, new_hi = int(math.floor(new_lo)), int(math.ceil(new_hi))
            new_lo, new_hi = max(int(p.low), new_lo), min(int(p.high), max(new_hi, new_lo + 1))
        else:
            new_lo, new_hi = max(float(p.low), new_lo), min(float(p.high), new_hi)
        out.append(Param(p.key, p.path, p.kind, new_lo, new_hi, p.log))
    return out


def border_warnings(params: list[Param], best: dict[str, Any]) -> list[str]:
    """A warning for every numeric parameter whose best value lies in the outer tenth of its
    range (measured on the log scale for log parameters), with an extended range to try."""
    out = []
    for p in params:
        if p.kind == "choice" or p.key not in best:
            continue
        pos = p.position(best[p.key])
        if pos < 0.1 or pos > 0.9:
            side = "lower" if pos < 0.1 else "upper"
            if p.log:
                new = (p.low / 10, p.high) if side == "lower" else (p.low, p.high * 10)
            else:
                half = (p.high - p.low) / 2
                new = (p.low - half, p.high) if side == "lower" else (p.low, p.high + half)
            scale = "log " if p.log else ""
            out.append(f"best {p.key} = {best[p.key]:.4g} lies in the {side} tenth of its {scale}range "
                       f"[{p.low:g}, {p.high:g}]: the optimum may lie outside; search again with "
                       f"{p.describe().split('(')[0]}({new[0]:g}, {new[1]:g})")
    return out


def noise_warning(top: Sequence[float], seed_values: Sequence[float], metric: str) -> str | None:
    """A warning when the spread of the top trials' metric is within seed noise (twice the
    standard deviation of the best configuration retrained with several seeds).

    Example:
        >>> noise_warning([0.912, 0.910, 0.909], [0.905, 0.911, 0.915], "val_acc") is not None
        True
        >>> noise_warning([0.95, 0.90, 0.85], [0.949, 0.950, 0.951], "val_acc") is None
        True
    """
    if len(top) < 2 or len(seed_values) < 2:
        return None
    import statistics as st

    sd = st.stdev(seed_values)
    spread = max(top) - min(top)
    if spread > 2 * sd:
        return None
    return (f"the top {len(top)} trials' {metric} spans {fmt(spread)}, within seed noise (the best configuration "
            f"varies by sd {fmt(sd)} over {len(seed_values)} seeds): the search cannot tell them apart; more seeds "
            "per trial or a larger validation set would separate them.")


def winners_curse_warning(best: float, seed_values: Sequence[float], metric: str, *, maximize: bool = True) -> str | None:
    """A warning when the best configuration, retrained with several seeds, falls short of its
    search value by more than twice its seed standard deviation: the search picked a lucky draw
    (the winner's curse), and the retrained mean is what to expect.

    Example:
        >>> winners_curse_warning(0.4775, [0.35, 0.38, 0.41], "val_acc") is not None
        True
        >>> winners_curse_warning(0.912, [0.905, 0.911, 0.915], "val_acc") is None
        True
    """
    if len(seed_values) < 2:
        return None
    import statistics as st

    mean, sd = st.fmean(seed_values), st.stdev(seed_values)
    shortfall = (best - mean) if maximize else (mean - best)
    if shortfall <= 2 * sd or shortfall <= 0:
        return None
    return (f"winner's curse: the search's best {metric} {fmt(best)} was a lucky draw; retrained with "
            f"{len(seed_values)} seeds the same configuration gives {fmt(mean)} (sd {fmt(sd)}), "
            f"{fmt(shortfall)} {'lower' if maximize else 'higher'}: expect the retrained value, not the search's.")


class _Search:
    def __init__(self, base: RunConfig, params: list[Param], opts: dict[str, Any], out: Path, storage: str,
                 name: str, workers: int, grace: float, progress: bool):
        self.base, self.params, self.opts, self.out = base, params, opts, out
        self.url, self.name, self.workers, self.grace, self.progress = storage, name, workers, grace, progress
        self.store = _study.open_storage(storage)
        self.maximize = opts["direction"] == "maximize"
        self.devices = []
        import torch

        if base.train.device == "auto" and torch.cuda.is_available():
            self.devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]

    def log(self, text: str) -> None:
        if self.progress:
            import sys

            print(text, file=sys.stderr, flush=True)

    def _planned(self, stage: str, params: list[Param] | None, slots: list[dict[str, Any]]) -> _study.PlannedStudy:
        plan = hashlib.sha256(json.dumps([stage, [p.to_dict() for p in params or []], slots], sort_keys=True,
                                         default=str).encode()).hexdigest()[:12]
        planned = _study.PlannedStudy(self.store, f"{self.name}-{stage}", self.opts["direction"], slots, plan,
                                      grace=self.grace)
        planned.open()
        return planned

    def _payload(self, planned, trial, values: dict[str, Any], epochs: float, *, seed: int | None = None,
                 test: bool = False, prune: bool = True) -> dict[str, Any]:
        cfg = apply_params(self.base, values, self.params)
        raw = cfg.to_dict()
        raw.pop("search", None)
        raw["train"] = {**raw["train"], "progress": False, "checkpoint_every_steps": None,
                        "checkpoint_every_epochs": None, "keep_best": 0}
        if seed is not None:
            raw["train"]["seed"] = seed
        stage = planned.name.rsplit("-", 1)[-1]
        tracking = {"group": self.name, "run_name": f"{stage}-{trial.number}",
                    "tags": {"stage": stage, "trial": trial.number, **{k: v for k, v in values.items()}}}
        return {"config": raw, "source": self.base.source, "epochs": epochs, "metric": self.opts["metric"],
                "storage": self.url, "study": planned.name if prune else None, "number": trial.number,
                "pruner": self.opts["pruner"], "test": test, "tracking": tracking,
                "device": self.devices[trial.number % len(self.devices)] if self.devices else None}

    def _suggest(self, planned, trial, params: list[Param], sampler_seed: int) -> dict[str, Any]:
        import optuna

        sampler = (optuna.samplers.TPESampler(seed=sampler_seed + trial.number, n_startup_trials=5)
                   if self.opts["sampler"] == "tpe" else optuna.samplers.RandomSampler(seed=sampler_seed + trial.number))
        study = optuna.load_study(study_name=planned.name, storage=self.store, sampler=sampler)
        study.get_trials(deepcopy=False)  # fills the study's storage cache, which Trial() relies on
        t = optuna.trial.Trial(study, planned._tid(trial.number))
        values = {}
        for p in params:
            if p.kind == "choice":
                values[p.key] = t.suggest_categorical(p.key, list(p.choices))
            elif p.kind == "int":
                values[p.key] = t.suggest_int(p.key, int(p.low), int(p.high), log=p.log)
            else:
                values[p.key] = t.suggest_float(p.key, float(p.low), float(p.high), log=p.log)
        return values

    def run_stage(self, stage: str, params: list[Param], n: int, epochs: float, *, offset: int,
                  fixed: list[dict[str, Any]] | None = None, test: bool = False) -> _study.PlannedStudy:
        if fixed is not None:
            slots = [{"slot": f"{stage}:{i}", **f} for i, f in enumerate(fixed)]
        elif self.opts["sampler"] == "random":
            slots = [{"slot": f"{stage}:{i}", "params": pt} for i, pt in enumerate(_sample(params, n, self.opts["seed"] + offset))]
        else:
            slots = [{"slot": f"{stage}:{i}"} for i in range(n)]
        planned = self._planned(stage, params, slots)
        counts = planned.counts()
        self.log(f"search {self.name}, {stage} stage: {counts['planned']} trials ({counts['done']} done), "
                 f"{epochs:g} epoch(s) each, {self.workers} worker(s)")

        def prepare(trial):
            if fixed is not None:
                values, seed = trial.user_attrs["values"], trial.user_attrs["seed"]
            else:
                values, seed = self._suggest(planned, trial, params, self.opts["seed"] + offset), None
            return self._payload(planned, trial, values, epochs, seed=seed, test=test, prune=fixed is None), values

        _study.run_slots(planned, workers=self.workers, prepare=prepare, execute=run_search_trial,
                         finish=lambda trial, values, result: self._finish(planned, trial, values, result, stage))
        return planned

    def _finish(self, planned, trial, values, result: dict[str, Any], stage: str) -> None:
        attrs = {k: v for k, v in result.items() if k != "value"}
        attrs["values"] = values
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        if result.get("pruned"):
            planned.finish(trial, result.get("value"), attrs, pruned=True)
            self.log(f"  {stage} trial {trial.number}: {shown}: pruned")
        elif result.get("failure") and result.get("value") is None:
            planned.finish(trial, None, attrs)
            self.log(f"  {stage} trial {trial.number}: {shown}: FAILED ({result['failure'].strip().splitlines()[-1][:160]})")
        else:
            planned.finish(trial, result["value"], attrs)
            self.log(f"  {stage} trial {trial.number}: {shown}: {self.opts['metric']} {fmt(result['value'])}")


def _options(base: RunConfig, **given: Any) -> dict[str, Any]:
    section = dict(base.search or {})
    for key in section:
        if key not in SEARCH_KEYS:
            raise unknown("key in search", key, SEARCH_KEYS)
    opts = {k: (given[k] if given.get(k) is not None else section.get(k)) for k in SEARCH_KEYS}
    opts["trials"] = opts["trials"] if opts["trials"] is not None else 20
    check_positive_int("trials", opts["trials"])
    opts["stages"] = opts["stages"] or ["coarse", "fine"]
    if isinstance(opts["stages"], str):
        opts["stages"] = [s.strip() for s in opts["stages"].split(",") if s.strip()]
    for s in opts["stages"]:
        check_choice("stage", s, ("coarse", "fine"))
    if "coarse" not in opts["stages"]:
        raise ValueError("the stages must include coarse (the full ranges); e.g. --stages coarse or coarse,fine")
    opts["sampler"] = check_choice("sampler", opts["sampler"] or "random", ("random", "tpe"))
    opts["pruner"] = check_choice("pruner", opts["pruner"] or "median", ("median", "hyperband", "none"))
    opts["metric"] = opts["metric"] or "val_acc"
    from trickbag.ablation.runner import direction_of  # the package's one rule (trickbag.loop.metric_mode)

    opts["direction"] = direction_of(opts["metric"], opts["direction"])
    opts["coarse_epochs"] = float(opts["coarse_epochs"] if opts["coarse_epochs"] is not None else 1.0)
    opts["fine_epochs"] = float(opts["fine_epochs"] or base.train.epochs or 1)
    opts["fine_trials"] = opts["fine_trials"] if opts["fine_trials"] is not None else max(3, opts["trials"] // 2)
    opts["top_fraction"] = float(opts["top_fraction"] or 0.25)
    opts["noise_seeds"] = 3 if opts["noise_seeds"] is None else int(opts["noise_seeds"])
    opts["seed"] = int(opts["seed"] or 0)
    check_positive_int("fine_trials", opts["fine_trials"])
    return opts


def run(
    config: str | Path | dict | RunConfig,
    space: str | Path | dict | None = None,
    *,
    trials: int | None = None,
    stages: Sequence[str] | str | None = None,
    sampler: str | None = None,
    metric: str | None = None,
    workers: int | None = None,
    storage: str | None = None,
    out: str | Path = "runs/search",
    overrides: Sequence[str] = (),
    study_name: str | None = None,
    coarse_epochs: float | None = None,
    fine_trials: int | None = None,
    noise_seeds: int | None = None,
    grace: float = 120.0,
    progress: bool = True,
    report: bool = True,
) -> dict[str, Any]:
    """Search a space of hyper-parameters and tricks the way the textbooks advise.

    Random sampling (TPE on request) on log scales for scale parameters; a coarse stage
    (``coarse_epochs``, one or less by default) over the full ranges, then a fine stage that
    narrows every range around the best coarse trials and trains for the config's epochs; bad
    trials pruned early (median or Hyperband) with their partial curves kept. Selection uses
    the validation split only; the best configuration is then trained ``noise_seeds`` times
    (seed noise) and its test-split result is reported once. Writes ``best.yaml`` (a config
    ``trickbag train`` accepts as it is), ``search.json`` and the report.
    """
    out = Path(out)
    base = load_config(config, list(overrides))
    opts = _options(base, trials=trials, stages=stages, sampler=sampler, metric=metric, workers=workers,
                    coarse_epochs=coarse_epochs, fine_trials=fine_trials, noise_seeds=noise_seeds)
    space = space if space is not None else opts["space"]
    if space is None:
        raise ValueError("give a search space: --space SPACE.yaml or search.space in the config")
    params, advice = load_space(space, base)
    workers = opts["workers"] if opts["workers"] is not None else 1  # 0 is an error, not "default"
    check_positive_int("workers", workers)
    _check_builds(base, params, opts["metric"])
    url = _study.user_storage_url(storage, out)
    if _study.sqlite_path(url) is None:
        _study.open_storage(url)  # a server is reached before anything is written
    out.mkdir(parents=True, exist_ok=True)
    remove_orphans(out)
    ident = hashlib.sha256(json.dumps([base.to_dict(), [p.to_dict() for p in params],
                                       {k: v for k, v in opts.items() if k != "workers"}], sort_keys=True,
                                      default=str).encode()).hexdigest()[:10]
    name = study_name or f"search-{ident}"
    meta = {"storage": _study.portable_url(url, out), "study": name, "base": base.to_dict(),
            "space": [p.to_dict() for p in params], "options": opts, "advice": advice, "provenance": provenance()}
    write_json(out / "search.json", meta, default=str)
    s = _Search(base, params, opts, out, url, name, workers, grace, progress)
    for a in advice:
        s.log(f"advice: {a}")
    start = time.perf_counter()
    coarse = s.run_stage("coarse", params, opts["trials"], opts["coarse_epochs"], offset=0)
    final_stage, final_params = coarse, params
    if "fine" in opts["stages"]:
        scored = [(t.user_attrs["values"], t.value) for t in coarse.completed() if t.value is not None
                  and t.state.name == "COMPLETE"]
        if len(scored) < 3:
            raise ValueError(f"the coarse stage has {len(scored)} completed trials; the fine stage needs 3")
        fine_params = narrow(params, scored, maximize=s.maximize, top_fraction=opts["top_fraction"])
        meta["fine_space"] = [p.to_dict() for p in fine_params]
        write_json(out / "search.json", meta, default=str)
        final_stage = s.run_stage("fine", fine_params, opts["fine_trials"], opts["fine_epochs"], offset=1)
        final_params = fine_params
    # Every stage that trained the full budget competes (the coarse stage too when its trials
    # were as long as the fine stage's); shorter trials are not comparable.
    full = [st for st in (coarse, final_stage) if st is final_stage or opts["coarse_epochs"] >= opts["fine_epochs"]]
    complete = [t for st in dict.fromkeys(full) for t in st.completed() if t.state.name == "COMPLETE" and t.value is not None]
    if not complete:
        raise ValueError(f"no trial of the {final_stage.name} study completed; see its failures in {out}")
    best = max(complete, key=lambda t: t.value if s.maximize else -t.value)
    best_values = best.user_attrs["values"]
    best_cfg = apply_params(base, best_values, params)
    best_dict = best_cfg.to_dict()
    best_dict.pop("search", None)
    best_dict.pop("ablation", None)
    import yaml

    write_text(out / "best.yaml", "# The best configuration of the search (selected on the validation split).\n"
               + yaml.safe_dump(best_dict, sort_keys=False))
    summary: dict[str, Any] = {"out": str(out), "study": name, "best": best_values, "best_value": best.value,
                               "metric": opts["metric"]}
    if opts["noise_seeds"] > 0:
        fixed = [{"values": best_values, "seed": base.train.seed + 1000 + i} for i in range(opts["noise_seeds"])]
        final = s.run_stage("final", final_params, len(fixed), opts["fine_epochs"] if "fine" in opts["stages"]
                            else opts["coarse_epochs"], offset=2, fixed=fixed, test=True)
        summary["final_trials"] = len(final.completed())
    summary["wall_time"] = time.perf_counter() - start
    if report:
        from trickbag.search.report import render

        summary.update(render(out))
    return summary


def _check_builds(base: RunConfig, params: list[Param], metric: str = "val_acc") -> None:
    """Build the run of one point of the space (the middle of every range, the first choice of
    every list) so unknown parameters, and a metric the run does not report, fail before the
    first trial."""
    from trickbag.ablation.trial import _splits
    from trickbag.train.build import build_run

    point = {}
    for p in params:
        if p.kind == "choice":
            point[p.key] = p.choices[0]
        else:
            mid = math.exp((math.log(p.low) + math.log(p.high)) / 2) if p.log else (p.low + p.high) / 2
            point[p.key] = int(round(mid)) if p.kind == "int" else mid
    cfg = apply_params(base, point, params)
    cfg.train.device = "cpu"
    try:
        built = build_run(cfg, splits=_splits(cfg))
    except ValueError as exc:
        raise ValueError(f"a configuration of this space does not build: {exc}") from None
    names = built.metric_names()
    if metric not in names:
        raise unknown("metric", metric, names)


