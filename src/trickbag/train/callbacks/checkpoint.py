"""Periodic and best-K checkpoints, written atomically."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from trickbag._atomic import write_json
from trickbag.loop import metric_mode
from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["Checkpoint"]

log = logging.getLogger("trickbag")


class Checkpoint(Callback):
    """Save the whole training state to ``run_dir/checkpoints/last.pt`` every ``every_steps``
    updates and/or ``every_epochs`` epochs, and keep the ``keep_best`` best epochs by
    ``monitor`` as ``best-<epoch>.pt`` (listed in ``best.json``); ``mode`` says whether higher
    (``"max"``) or lower (``"min"``) is better and is inferred from the metric's name when not
    given (:func:`~trickbag.loop.metric_mode`: losses and errors are minimised). Files are written to a
    temporary name, fsynced and renamed, so a crash mid-write never replaces a good one.
    Nothing is saved after a non-finite loss, or when a weight is not finite. Main process only.
    """

    def __init__(self, every_steps: int | None = None, every_epochs: int | None = 1, keep_best: int = 0,
                 monitor: str = "val_acc", mode: str | None = None, dirname: str | Path | None = None):
        mode = metric_mode(monitor, mode)
        if every_steps is None and every_epochs is None and keep_best == 0:
            raise ValueError("Checkpoint needs every_steps, every_epochs or keep_best")
        self.every_steps, self.every_epochs, self.keep_best = every_steps, every_epochs, keep_best
        self.monitor, self.mode = monitor, mode
        self.dirname = Path(dirname) if dirname is not None else None
        self.best: list[tuple[float, int, str]] = []

    def _dir(self, state: TrainState) -> Path:
        if self.dirname is not None:
            return self.dirname
        if state.run_dir is None:
            raise ValueError("Checkpoint needs a dirname or a trainer run_dir")
        return state.run_dir / "checkpoints"

    def _healthy(self, state: TrainState) -> bool:
        if state.diverged:
            return False
        # weights and buffers (BatchNorm statistics), by their max-norm: a 2-norm overflows on
        # large but finite values
        tensors = [t.detach() for t in state.raw_model.state_dict().values() if t.is_floating_point()]
        if tensors and not torch.isfinite(torch.stack(torch._foreach_norm(tensors, float("inf")))).all():
            log.warning("checkpoint skipped at step %d: a weight is not finite", state.step)
            return False
        return True

    def _save(self, state: TrainState, name: str) -> Path:
        return state.trainer.save_checkpoint(self._dir(state) / name)

    def on_step_end(self, state: TrainState) -> None:
        if self.every_steps and state.is_main and state.step % self.every_steps == 0 and self._healthy(state):
            self._save(state, "last.pt")

    def on_epoch_end(self, state: TrainState) -> None:
        if not state.is_main or not self._healthy(state):
            return
        epoch = state.epoch + 1
        if self.every_epochs and epoch % self.every_epochs == 0:
            self._save(state, "last.pt")
        if self.keep_best and self.monitor in state.metrics:
            value = float(state.metrics[self.monitor])
            sign = -1.0 if self.mode == "max" else 1.0
            self.best.append((sign * value, epoch, f"best-{epoch}.pt"))
            self.best.sort()
            if any(e == epoch for _, e, _ in self.best[: self.keep_best]):
                self._save(state, f"best-{epoch}.pt")
            for _, _, name in self.best[self.keep_best:]:
                (self._dir(state) / name).unlink(missing_ok=True)
            self.best = self.best[: self.keep_best]
            write_json(self._dir(state) / "best.json",
                       [{"file": n, "epoch": e, self.monitor: sign * v} for v, e, n in self.best])

    def state_dict(self) -> dict:
        return {"best": [list(b) for b in self.best]}

    def load_state_dict(self, state: dict) -> None:
        self.best = [tuple(b) for b in state["best"]]
