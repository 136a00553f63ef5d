"""Early stopping and the NaN guard."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from trickbag._validate import check_nonnegative, check_positive_int
from trickbag.loop import all_finite, first_nonfinite_module, improved, metric_mode
from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["EarlyStopping", "NaNGuard"]

log = logging.getLogger("trickbag")


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs;
    with ``restore_best`` the model ends with the weights of its best epoch. ``mode`` (``"min"``
    or ``"max"``) is inferred from the metric's name when not given
    (:func:`~trickbag.loop.metric_mode`). A run resumed from a checkpoint written after the stop
    stays stopped."""

    touches = frozenset({"weights"})

    def __init__(self, monitor: str = "val_loss", mode: str | None = None, patience: int = 5, min_delta: float = 0.0,
                 restore_best: bool = True):
        mode = metric_mode(monitor, mode)
        check_positive_int("patience", patience)
        check_nonnegative("min_delta", min_delta)
        self.monitor, self.mode, self.patience, self.min_delta, self.restore_best = monitor, mode, patience, min_delta, restore_best
        self.best: float | None = None
        self.best_epoch = -1
        self.wait = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def _reason(self) -> str:
        kept = f"; the model keeps epoch {self.best_epoch}'s weights" if self.restore_best else ""
        return (f"early stopping after epoch {self.best_epoch + self.wait}: {self.monitor} has not improved for "
                f"{self.patience} epochs (best {self.best:.4g} at epoch {self.best_epoch}){kept}")

    def reported_metrics(self, val_metrics: list[str]) -> list[str]:
        """With ``restore_best``, the epoch whose weights the model ends with."""
        return ["best_epoch"] if self.restore_best else []

    def on_fit_start(self, state: TrainState) -> None:
        if self.wait >= self.patience:  # resumed from a checkpoint written when it stopped
            state.stop(self._reason())

    def on_epoch_end(self, state: TrainState) -> None:
        if self.monitor not in state.metrics:
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r}, which this run does not report; "
                f"available: {sorted(k for k, v in state.metrics.items() if isinstance(v, (int, float)))}"
            )
        value = float(state.metrics[self.monitor])
        if improved(value, self.best, mode=self.mode, min_delta=self.min_delta):
            self.best, self.best_epoch, self.wait = value, state.epoch + 1, 0
            if self.restore_best:
                self.best_state = {k: v.detach().clone() for k, v in state.raw_model.state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                state.stop(self._reason())

    def on_fit_end(self, state: TrainState) -> None:
        if self.restore_best and self.best_state is not None:
            state.raw_model.load_state_dict(self.best_state)
            state.metrics["best_epoch"] = self.best_epoch

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_state": {k: v.cpu() for k, v in self.best_state.items()} if self.best_state else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait, self.best_state = state["best"], state["best_epoch"], state["wait"], state["best_state"]


class NaNGuard(Callback):
    """Stop on a non-finite loss, gradient or buffer, before the update that would spread it.

    It checks after the backward pass (every ``check_every`` steps; each check synchronises
    with the device once), skips the update, stops training, and reports the step, the
    learning rate, the gradient norm and the layer where non-finite values first appeared
    (in the forward pass, else the first parameter whose gradient is not finite, else the
    first buffer, such as BatchNorm's running variance, that overflowed). It marks the
    run ``diverged``: no checkpoint is written after that, and :meth:`Run.fit
    <trickbag.train.build.Run.fit>` keeps only finite weights and says which. The diagnosis is
    logged and added to the epoch's metrics as ``"diagnosis"``. With fp16, overflowing
    gradients are the scaler's business: only the loss is checked.
    """

    def __init__(self, check_every: int = 1):
        check_positive_int("check_every", check_every)
        self.check_every = check_every
        self.diagnosis: str | None = None

    def on_after_backward(self, state: TrainState) -> None:
        if not state.will_step or (state.step + 1) % self.check_every:
            return
        model = state.raw_model
        params = list(model.parameters()) if state.scaler is None else []
        ok = all_finite(state.loss, params)
        buffers = [b for b in model.buffers() if b.is_floating_point()]
        if buffers:  # BatchNorm statistics can overflow while the loss (batch statistics) stays finite
            ok = ok & torch.isfinite(torch.stack(torch._foreach_norm(buffers, float("inf")))).all().to(ok.device)
        if bool(ok):  # the one host sync of the check
            return
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(())
        grad_ok = not grads or bool(torch.isfinite(torch.stack(torch._foreach_norm(grads, float("inf")))).all())
        loss_ok = bool(torch.isfinite(state.loss.detach()))
        where = first_nonfinite_module(model, state.inputs)
        if where is None and not grad_ok:
            where = next((f"{n} (gradient)" for n, p in reversed(list(model.named_parameters()))
                          if p.grad is not None and not torch.isfinite(p.grad).all()), None)
        if where is None and loss_ok and grad_ok:
            where = next((f"{n} (buffer)" for n, b in model.named_buffers()
                          if b.is_floating_point() and not torch.isfinite(b).all()), None)
        what = "loss" if not loss_ok else "gradient" if not grad_ok else "buffer"
        self.diagnosis = (
            f"non-finite {what} at step {state.step + 1} (epoch {state.epoch + 1}): loss {float(state.loss.detach()):.4g}, "
            f"learning rate {state.lr:.4g}, gradient norm {float(norm):.4g}; first non-finite values in "
            f"{where or 'the loss computation'}. The update was skipped and training stopped. "
            "Lower the learning rate or clip gradients."
        )
        log.warning(self.diagnosis)
        state.skip_step = True
        state.diverged = True
        state.stop(self.diagnosis)

    def on_epoch_end(self, state: TrainState) -> None:
        if self.diagnosis is not None:
            state.metrics["diagnosis"] = self.diagnosis
