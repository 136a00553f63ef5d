"""``train.loggers``: the entries checked by name, and the MLflow and W&B tracking callbacks built
with the run's group, name and tags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trickbag._validate import unknown
from trickbag.train.build._kwargs import _check_kwargs
from trickbag.train.config import RunConfig

__all__ = ["build_trackers"]


def _logger_specs(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """``train.loggers`` as {name: parameters}; names checked against the known loggers."""
    from trickbag.train.callbacks.tracking import TRACKERS

    out: dict[str, dict[str, Any]] = {}
    for item in cfg.train.loggers:
        if isinstance(item, str):
            name, params = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, params = next(iter(item.items()))
            params = dict(params or {})
        else:
            raise ValueError(f"train.loggers entries are a name or {{name: {{params}}}}, got {item!r}")
        if name not in (*TRACKERS, "tensorboard"):
            raise unknown("logger in train.loggers", name, [*TRACKERS, "tensorboard"])
        if name == "tensorboard" and params:
            raise ValueError(f"the tensorboard logger takes no parameters (it writes RUN_DIR/tensorboard), got {params!r}")
        out[name] = params
    return out


def build_trackers(cfg: RunConfig, loggers: dict[str, dict[str, Any]], run_dir: Path | None,
                   tracking: dict[str, Any] | None = None) -> list[Any]:
    """The MLflow and W&B loggers of ``train.loggers``, given the config to record and the run's
    group, name and tags (TensorBoard goes through the metrics log of a run directory)."""
    from trickbag.train.callbacks.tracking import TRACKERS

    tracking = dict(tracking or {})
    group, run_name, tags = tracking.get("group"), tracking.get("run_name"), dict(tracking.get("tags") or {})
    if run_name is None and run_dir is not None:
        run_name = run_dir.name
    out = []
    for name, params in loggers.items():
        if name == "tensorboard":
            continue
        cls = TRACKERS[name]
        params = dict(params)
        if name == "mlflow":
            params.setdefault("experiment", group or "trickbag")
            params.setdefault("run_name", run_name)
            params["tags"] = {**tags, **params.get("tags", {})}
        else:
            params.setdefault("group", group)
            params.setdefault("run_name", run_name)
            params["tags"] = [*(f"{k}={v}" for k, v in tags.items()), *params.get("tags", [])]
        _check_kwargs(cls.__init__, params, f"logger {name}", skip=("config",))
        out.append(cls(config=cfg.to_dict(), **params))
    return out
