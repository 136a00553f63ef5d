"""One trial of an ablation: one arm with one seed, trained through the Trainer."""

from __future__ import annotations

import math
import time
import traceback
from typing import Any

import torch

__all__ = ["run_trial", "final_metric"]

_SPLITS: dict[str, Any] = {}
#: Data draws kept per worker process: with ``ablation.vary_data`` each seed has its own, and
#: seed-major claiming brings a worker a few seeds' trials in turn.
_KEEP = 4


def _splits(cfg, device: str | None = None) -> Any:
    """Data loaded once per worker process and shared by its trials (the splits never change; the
    last few draws are kept when seeds draw their own data);
    with a CUDA ``device`` the tensors move there once too, so a trial's loaders start on the
    device without a copy (a persistent worker decodes, copies and warms up once, not per trial)."""
    import yaml

    from trickbag.train.build import load_splits

    key = yaml.safe_dump({"data": cfg.to_dict()["data"], "source": cfg.source})
    if key not in _SPLITS:
        while len(_SPLITS) >= _KEEP:
            _SPLITS.pop(next(iter(_SPLITS)))
        _SPLITS[key] = load_splits(cfg)
    splits = _SPLITS.pop(key)
    _SPLITS[key] = splits  # the most recently used last
    if device is not None and torch.device(device).type == "cuda":
        for part in ("train", "val", "test"):
            data = getattr(splits, part)
            if data is not None and data.inputs.device != torch.device(device):
                data.inputs, data.targets = data.inputs.to(device), data.targets.to(device)
    return splits


def _device(cfg) -> str | None:
    """The device a trial trains on, for keeping its data there (None: the CPU)."""
    if cfg.train.device == "auto":
        return "cuda" if torch.cuda.is_available() else None
    return cfg.train.device


def final_metric(results: dict[str, Any], metric: str) -> tuple[float | None, str | None]:
    """(the metric's final value, None) or (None, why it is missing) from ``Run.fit()``'s results."""
    final = {**results.get("test", {}), **results["final"]}  # the test split's: evaluated once, at the end
    if metric not in final:
        numeric = sorted(k for k, v in final.items() if isinstance(v, (int, float)))
        return None, f"metric {metric!r} is not reported by this run; available: {numeric}"
    return float(final[metric]), None


def run_trial(payload: dict[str, Any]) -> dict[str, Any]:
    """Train ``payload["config"]`` (a full run config dict) and report the metric's final value
    and the curves. Never raises: failures come back as ``{"failure": traceback}``."""
    from trickbag.train.build import build_run
    from trickbag.train.config import load_config

    start = time.perf_counter()
    try:
        if payload.get("device"):
            payload["config"].setdefault("train", {})["device"] = payload["device"]
        cfg = load_config(payload["config"])
        cfg.source = payload.get("source")
        if torch.cuda.is_available():
            torch.backends.cudnn.benchmark = True
        run = build_run(cfg, splits=_splits(cfg, _device(cfg)), tracking=payload.get("tracking"))
        fit_start = time.perf_counter()
        results = run.fit()
        train_time = time.perf_counter() - fit_start
        metric = payload["metric"]
        value, missing = final_metric(results, metric)
        if missing:
            return {"failure": missing}
        keep = ("epoch", "train_loss", "val_loss", "val_acc", metric)
        history = [{k: h[k] for k in keep if k in h and isinstance(h[k], (int, float))} for h in results["history"]]
        out = {
            "value": value if math.isfinite(value) else None,
            "history": history,
            "wall_time": time.perf_counter() - start,
            "train_time": train_time,
            "steps": run.trainer.state.step,
            "device": str(run.trainer.device),
        }
        if results.get("stopped"):
            out["stopped"] = results["stopped"]
        if not math.isfinite(value) or run.trainer.state.diverged:
            out["failure"] = results.get("stopped") or f"{metric} is not finite"
            out["value"] = None
        return out
    except Exception:  # reported on the trial, not raised in the worker
        return {"failure": traceback.format_exc(limit=8), "wall_time": time.perf_counter() - start}
