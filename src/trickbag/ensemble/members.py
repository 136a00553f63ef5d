"""Ensemble members from run directories: the model a run trained, rebuilt from its config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Member", "load_member", "run_splits"]

_SPLITS: dict[str, Any] = {}


@dataclass
class Member:
    """One model of an ensemble, with the input transform its run trained with.

    Attributes:
        name: how reports call it (the run directory or weights file).
        model: the network, in eval mode.
        normalize: applied to raw inputs first (the run's normaliser for uint8 images), or None.
        config: the run's resolved config, when it came from a run directory.
    """

    name: str
    model: nn.Module
    normalize: Callable[[Tensor], Tensor] | None = None
    config: Any = None
    info: dict[str, Any] = field(default_factory=dict)


def run_splits(cfg: Any) -> Any:
    """The data splits a run config describes, loaded once per process for equal data configs."""
    import yaml

    from trickbag.train.build import load_splits

    key = yaml.safe_dump({"data": cfg.to_dict()["data"], "source": cfg.source})
    if key not in _SPLITS:
        _SPLITS.clear()
        _SPLITS[key] = load_splits(cfg)
    return _SPLITS[key]


def _run_dir_of(path: Path) -> tuple[Path, Path]:
    """(run directory, weights file) for a run directory or a weights file inside one."""
    if path.is_dir():
        weights = path / "model.pt"
        if not weights.exists():
            last = path / "checkpoints" / "last.pt"
            if not last.exists():
                raise FileNotFoundError(f"{path} holds no trained model (model.pt or checkpoints/last.pt)")
            weights = last
        return path, weights
    if not path.exists():
        raise FileNotFoundError(f"ensemble member not found: {path}")
    run = path.parent.parent if path.parent.name in ("snapshots", "checkpoints") else path.parent
    return run, path


def load_member(path: str | Path, *, device: str | torch.device = "cpu") -> Member:
    """Rebuild a run's model from ``config.yaml`` and load its weights: ``RUN_DIR`` (its
    ``model.pt``, else its last checkpoint), or a weights file inside one
    (``RUN_DIR/snapshots/snapshot-3.pt`` of a snapshot ensemble, ``RUN_DIR/checkpoints/best-*.pt``).
    Uint8 images get the run's normaliser, fitted again on the run's training split.
    Evaluation-only tricks of the run (``tta``, ``temperature_scaling``) are not applied."""
    from trickbag.augment import fit_normalizer
    from trickbag.train.build import apply_tricks, build_model
    from trickbag.train.checkpoint import load_checkpoint
    from trickbag.train.config import load_config

    run_dir, weights = _run_dir_of(Path(path))
    config_file = run_dir / "config.yaml"
    if not config_file.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml); train members with `trickbag train`")
    cfg = load_config(config_file)
    splits = run_splits(cfg)
    resolved, plan = apply_tricks(cfg)
    model = build_model(resolved, splits)
    for entry, params in plan.model:
        out = entry.load_apply()(model, **params)
        model = out if isinstance(out, nn.Module) else model
    state = load_checkpoint(weights)  # weights_only: a damaged or malicious file is one ValueError
    if isinstance(state, dict) and "model" in state and "format" in state:  # a trainer checkpoint
        state = state["model"]
    model.load_state_dict(state)
    model.to(device).eval()
    inputs = splits.train.inputs
    normalize = None
    if splits.train.kind == "image" and not inputs.is_floating_point():
        normalize = fit_normalizer(inputs).to(device)
    return Member(str(path), model, normalize, cfg, {"run_dir": str(run_dir), "weights": str(weights)})
