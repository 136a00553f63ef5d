"""``trickbag export RUN_DIR``: a run's model as a ``torch.export`` program, without its data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["load_run_model", "export_run"]


class _Shapes:
    """What build_model reads of the data, from a run's results.json."""

    def __init__(self, info: dict[str, Any]):
        self.input_shape = tuple(info["input_shape"])
        self.num_classes = int(info["num_classes"])
        self.vocab = {str(i): i for i in range(info["vocab_size"])} if info.get("vocab_size") else None


def load_run_model(run_dir: str | Path, *, weights: str = "best") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a run's model from its config (model-surgery tricks included) and load its
    weights (``best_model.pt`` or ``model.pt``) with ``weights_only=True``; in eval mode."""
    from trickbag.train.build import apply_tricks, build_model
    from trickbag.train.checkpoint import load_checkpoint
    from trickbag.train.config import load_config

    run_dir = Path(run_dir)
    if weights not in ("best", "final"):
        raise ValueError(f"weights must be 'best' or 'final', got {weights!r}")
    for needed in ("config.yaml", "results.json"):
        if not (run_dir / needed).exists():
            raise FileNotFoundError(f"{run_dir} is not a finished run directory (no {needed})")
    info = json.loads((run_dir / "results.json").read_text()).get("model_input")
    if not info:
        raise ValueError(f"{run_dir}/results.json has no model_input (a run from an older trickbag): retrain it")
    cfg, plan = apply_tricks(load_config(run_dir / "config.yaml"))
    cfg.model = {k: v for k, v in cfg.model.items() if k != "pretrained"}  # the weights come from the run
    model = build_model(cfg, _Shapes(info))
    for entry, params in plan.model:
        out = entry.load_apply()(model, **params)
        model = out if isinstance(out, nn.Module) else model
    path = run_dir / ("best_model.pt" if weights == "best" else "model.pt")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (the run diverged, or is unfinished)")
    model.load_state_dict(load_checkpoint(path))  # weights_only: a damaged or malicious file is one ValueError
    return model.eval(), info


def export_run(run_dir: str | Path, *, weights: str = "best", out: str | Path | None = None) -> Path:
    """Export a run's model with ``torch.export`` (a dynamic batch dimension) to ``out``
    (default ``RUN_DIR/model.pt2``); check that the program reproduces the model's outputs.

    Load it with ``torch.export.load(path).module()`` (no trickbag needed). Models that
    ``torch.export`` cannot trace (data-dependent Python control flow) raise a ``ValueError``
    with torch's reason.
    """
    model, info = load_run_model(run_dir, weights=weights)
    dtype = getattr(torch, info["input_dtype"])
    shape = (2, *info["input_shape"])
    example = (torch.randint(0, max(2, info.get("vocab_size") or 2), shape, dtype=dtype)
               if not dtype.is_floating_point else torch.randn(shape, dtype=dtype))
    try:
        program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    except Exception as exc:  # torch's own error types vary by version
        raise ValueError(f"torch.export cannot export this model: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    with torch.no_grad():
        expected = model(example)
        got = program.module()(example)
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        raise ValueError("the exported program's outputs differ from the model's; not written")
    out = Path(out) if out is not None else Path(run_dir) / "model.pt2"
    torch.export.save(program, out)
    return out
