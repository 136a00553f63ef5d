"""One search trial: train a sampled configuration, reporting to the pruner as it goes."""

from __future__ import annotations

import math
import time
import traceback
from typing import Any

import torch

from trickbag.train.callbacks import Callback

__all__ = ["run_search_trial", "make_pruner"]


def make_pruner(kind: str):
    import optuna

    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


class ReportToPruner(Callback):
    """After every evaluation, report the metric to the Optuna trial; stop when it says prune."""

    def __init__(self, trial, metric: str):
        self.trial, self.metric = trial, metric
        self.pruned = False
        self.curve: list[list[float]] = []

    def on_eval_end(self, state) -> None:
        value = state.metrics.get(self.metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        if self.curve and self.curve[-1][0] == state.step:  # the epoch-end evaluation of a reported step
            return
        self.curve.append([state.step, float(value)])
        self.trial.report(float(value), state.step)
        if self.trial.should_prune():
            self.pruned = True
            state.stop(f"pruned at step {state.step} ({self.metric} {value:.4g})")


def run_search_trial(payload: dict[str, Any]) -> dict[str, Any]:
    """Train ``payload["config"]`` for the stage's budget; return the final metric, the curve
    and whether the pruner stopped it. Never raises."""
    import optuna

    from trickbag.ablation.trial import _device, _splits, final_metric
    from trickbag.train.build import build_run
    from trickbag.train.config import load_config

    start = time.perf_counter()
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        cfg = load_config(payload["config"])
        cfg.source = payload.get("source")
        if payload.get("device"):
            cfg.train.device = payload["device"]
        if torch.cuda.is_available():
            torch.backends.cudnn.benchmark = True
        splits = _splits(cfg, _device(cfg))
        epochs = payload["epochs"]
        steps_per_epoch = max(1, len(splits.train) // cfg.data.batch_size // cfg.train.grad_accum_steps)
        if epochs < 1:
            cfg.train.epochs, cfg.train.steps = None, max(1, round(epochs * steps_per_epoch))
            cfg.train.eval_every_steps = max(1, cfg.train.steps // 4)
        else:
            cfg.train.epochs, cfg.train.steps = int(round(epochs)), None
            cfg.train.eval_every_steps = max(1, steps_per_epoch // 2) if epochs <= 2 else None
        cbs = []
        reporter = None
        if payload.get("study"):
            from trickbag import _study

            storage = _study.open_storage(payload["storage"])
            study = optuna.load_study(study_name=payload["study"], storage=storage,
                                      pruner=make_pruner(payload.get("pruner", "none")))
            tid = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(payload["study"]),
                                                                     payload["number"])
            study.get_trials(deepcopy=False)  # fills the study's storage cache, which Trial() relies on
            reporter = ReportToPruner(optuna.trial.Trial(study, tid), payload["metric"])
            cbs.append(reporter)
        run = build_run(cfg, splits=splits, callbacks=cbs, tracking=payload.get("tracking"))
        fit_start = time.perf_counter()
        results = run.fit()
        train_time = time.perf_counter() - fit_start
        metric = payload["metric"]
        value, missing = final_metric(results, metric)
        if missing:
            return {"failure": missing}
        out: dict[str, Any] = {
            "value": value if math.isfinite(value) else None,
            "pruned": bool(reporter and reporter.pruned),
            "curve": reporter.curve if reporter else [],
            "steps": run.trainer.state.step,
            "train_time": train_time,
            "wall_time": time.perf_counter() - start,
        }
        if payload.get("test") and run.test_data is not None and not run.trainer.state.diverged:
            out["test"] = results.get("test", {})
        if run.trainer.state.diverged or not math.isfinite(value):
            out["failure"] = results.get("stopped") or f"{metric} is not finite"
            out["value"] = None
        return out
    except Exception:
        return {"failure": traceback.format_exc(limit=8), "wall_time": time.perf_counter() - start}
