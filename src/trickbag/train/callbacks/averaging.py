"""Weight averaging: EMA, SWA (torch's swa_utils) and snapshot ensembles."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trickbag._validate import check_nonnegative, check_positive_int, check_range
from trickbag.loop import average_predictions, ema_update_
from trickbag.schedules import cyclic_cosine, to_lr_scheduler
from trickbag.train.callbacks.base import Callback
from trickbag.train.callbacks.schedule import restore_scheduler
from trickbag.train.state import TrainState

__all__ = ["EMA", "SWA", "SnapshotEnsemble"]


def _float_state(model: nn.Module) -> list[torch.Tensor]:
    return [t for t in model.state_dict().values() if t.is_floating_point()]


class EMA(Callback):
    r"""Exponential moving average of the weights, updated after every ``every_steps`` updates:
    :math:`\bar w \leftarrow d_t\,\bar w + (1 - d_t)\,w` (floating-point buffers such as
    BatchNorm statistics too). Validation runs with the averaged weights; at the end of training
    the model keeps them when ``apply_at_end`` (default).

    ``warmup`` (default on) caps the decay of the n-th update (n = 0, 1, ...) at
    :math:`(1 + n) / (10 + n)`, as TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` does, so
    the average forgets the random initialisation within the first updates: a short run is not
    wrecked by a decay chosen for a long one (``EMA(0.999)`` over 100 steps would otherwise
    still be 90% initial weights). It is not applied with ``ramp_power > 0``, which is a warm-up
    of its own (no averaging at first).

    The records' cadence (Jordan 2024) is a few options away: ``ramp_power`` grows the decay over
    the run, :math:`d_t = d\,(t / T)^{p}` (no averaging at first, full ``decay`` at the end);
    ``reset_weights`` copies the average back into the model after every update, which makes it
    Lookahead with a slow-step size :math:`1 - d_t` every ``every_steps`` steps;
    ``start_epoch`` starts the average late, as a copy of the weights at the first update of that
    epoch (before it, nothing is averaged and evaluation sees the weights as they are); and
    ``reset_at_epoch_end`` copies the average back at the end of every epoch too, discarding the
    steps since the last update (airbench94 does so before evaluating):
    ``EMA(decay=0.95 ** 5, every_steps=5, ramp_power=3, reset_weights=True, start_epoch=3,
    reset_at_epoch_end=True)``."""

    touches = frozenset({"weights"})

    def __init__(self, decay: float = 0.999, every_steps: int = 1, apply_at_end: bool = True,
                 ramp_power: float = 0.0, reset_weights: bool = False, start_epoch: int = 0,
                 reset_at_epoch_end: bool = False, warmup: bool = True):
        check_range("decay", decay, 0.0, 1.0, high_open=True)
        check_positive_int("every_steps", every_steps)
        check_nonnegative("ramp_power", ramp_power)
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ValueError(f"start_epoch must be an integer >= 0, got {start_epoch!r}")
        self.decay, self.every_steps, self.apply_at_end = decay, every_steps, apply_at_end
        self.ramp_power, self.reset_weights = ramp_power, reset_weights
        self.start_epoch, self.reset_at_epoch_end = start_epoch, reset_at_epoch_end
        self.warmup = bool(warmup)
        self.shadow: list[torch.Tensor] | None = None  # None until the average starts
        self.updates = 0  # averaging updates made so far (the warm-up's n)

    def decay_at(self, step: int, total_steps: int, updates: int | None = None) -> float:
        """:math:`d_t`: the decay used by the update after ``step`` of ``total_steps``, the
        ``updates``-th averaging update (default: the count so far) for the warm-up."""
        if self.ramp_power == 0:
            n = self.updates if updates is None else updates
            return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay
        return self.decay * (min(step, total_steps) / max(total_steps, 1)) ** self.ramp_power

    def on_fit_start(self, state: TrainState) -> None:
        live = _float_state(state.raw_model)
        if self.shadow is None:
            if self.start_epoch == 0:  # the average starts from the initial weights
                self.shadow = [t.detach().clone() for t in live]
        else:
            self.shadow = [s.to(t.device) for s, t in zip(self.shadow, live)]

    @torch.no_grad()
    def on_step_end(self, state: TrainState) -> None:
        if state.step % self.every_steps == 0:
            live = _float_state(state.raw_model)
            if self.shadow is None:  # not started yet: it starts as a copy at its epoch's first update
                if state.epoch >= self.start_epoch:
                    self.shadow = [t.detach().clone() for t in live]
                return
            ema_update_(self.shadow, live, self.decay_at(state.step, state.total_steps))
            self.updates += 1
            if self.reset_weights:  # Lookahead: the fast weights restart from the average
                torch._foreach_copy_(live, self.shadow)

    @torch.no_grad()
    def on_epoch_end(self, state: TrainState) -> None:
        if self.reset_at_epoch_end and self.shadow is not None:
            torch._foreach_copy_(_float_state(state.raw_model), self.shadow)

    @torch.no_grad()
    def _swap(self, state: TrainState) -> None:
        if self.shadow is None:  # nothing averaged yet: evaluate the weights as they are
            return
        live = _float_state(state.raw_model)
        for a, b in zip(live, self.shadow):
            tmp = a.clone()
            a.copy_(b)
            b.copy_(tmp)

    on_eval_start = _swap
    on_eval_end = _swap

    @torch.no_grad()
    def on_fit_end(self, state: TrainState) -> None:
        if self.apply_at_end and self.shadow is not None:
            torch._foreach_copy_(_float_state(state.raw_model), self.shadow)

    def state_dict(self) -> dict[str, Any]:
        return {"shadow": [t.cpu() for t in self.shadow] if self.shadow is not None else None,
                "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.shadow = state["shadow"]
        self.updates = int(state.get("updates", 0))


class SWA(Callback):
    """Stochastic weight averaging (Izmailov et al. 2018) with torch's ``swa_utils``: from
    ``start_epoch`` the weights are averaged at the end of every epoch (``AveragedModel``), with
    ``SWALR`` setting a constant ``swa_lr`` when given; at the end the model takes the average
    and BatchNorm statistics are recomputed on the training data (``update_bn``), and
    ``swa_val_*`` metrics report it."""

    touches = frozenset({"weights"})

    def __init__(self, start_epoch: int = 1, swa_lr: float | None = None, anneal_epochs: int = 1):
        check_nonnegative("start_epoch", start_epoch)
        self.start_epoch, self.swa_lr, self.anneal_epochs = start_epoch, swa_lr, anneal_epochs
        self._pending: dict[str, Any] | None = None

    def sets_lr(self) -> bool:
        return self.swa_lr is not None

    def reported_metrics(self, val_metrics: list[str]) -> list[str]:
        """The metrics it adds at the end of the run: ``swa_`` + each validation metric."""
        return [f"swa_{m}" for m in val_metrics]

    def on_fit_start(self, state: TrainState) -> None:
        from torch.optim.swa_utils import SWALR, AveragedModel

        self.averaged = AveragedModel(state.raw_model)
        self.scheduler = None
        if self.swa_lr is not None:
            steps = max(1, self.anneal_epochs * state.steps_per_epoch)
            self.scheduler = SWALR(state.optimizer, swa_lr=self.swa_lr, anneal_epochs=steps)
        if self._pending is not None:
            self.averaged.load_state_dict(self._pending["averaged"])
            if self.scheduler is not None and self._pending.get("scheduler"):
                restore_scheduler(self.scheduler, self._pending["scheduler"])
            self._pending = None

    def on_step_end(self, state: TrainState) -> None:
        if self.scheduler is not None and state.epoch >= self.start_epoch:
            self.scheduler.step()

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch + 1 > self.start_epoch:
            self.averaged.update_parameters(state.raw_model)

    @torch.no_grad()
    def on_fit_end(self, state: TrainState) -> None:
        from torch.optim.swa_utils import update_bn

        if int(self.averaged.n_averaged) == 0:
            return
        update_bn(_one_epoch(state.train_data), self.averaged, device=state.device)
        state.raw_model.load_state_dict(self.averaged.module.state_dict())
        if state.val_data is not None:
            metrics = state.trainer.evaluate(state.val_data, prefix="swa_val")
            state.metrics.update(metrics)
            if state.history:
                state.history[-1].update(metrics)

    def state_dict(self) -> dict[str, Any]:
        if not hasattr(self, "averaged"):
            return self._pending or {}
        return {"averaged": self.averaged.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = state or None


def _one_epoch(loader: Any) -> Any:
    """A whole epoch of a resumable loader for BatchNorm statistics. Training ends on its last
    update, leaving the loader positioned at the end of its epoch, where iterating it again
    gives no batches (and update_bn would leave BatchNorm reset to mean 0, variance 1); its
    position is restored afterwards."""
    if not (hasattr(loader, "state_dict") and hasattr(loader, "set_epoch")):
        return loader

    def batches():
        saved = loader.state_dict()
        try:
            loader.set_epoch(saved["epoch"] + 1)
            yield from loader
        finally:
            loader.load_state_dict(saved)

    return batches()


class SnapshotEnsemble(Callback):
    """Snapshot ensembles (Huang et al. 2017, "train 1, get M for free"): cosine annealing
    restarted ``cycles`` times over the run (:func:`~trickbag.schedules.cyclic_cosine`), a
    snapshot of the weights at the end of every cycle (in memory, and under
    ``run_dir/snapshots/``), and at the end the averaged softmax of the snapshots evaluated on
    the validation data (``ensemble_val_acc``; ``snapshot_val_acc`` lists each snapshot).
    With ``set_schedule=False`` it only takes snapshots every ``cycle_steps`` (for a cyclic
    schedule of your own)."""

    def __init__(self, cycles: int = 5, *, set_schedule: bool = True, cycle_steps: int | None = None, floor: float = 0.0):
        check_positive_int("cycles", cycles)
        if not set_schedule and cycle_steps is None:
            raise ValueError("SnapshotEnsemble(set_schedule=False) needs cycle_steps (the length of your cycles)")
        self.cycles, self.set_schedule, self.cycle_steps, self.floor = cycles, set_schedule, cycle_steps, floor
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self._sched_state: dict[str, Any] | None = None

    @property
    def touches(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({"lr", "weights"}) if self.set_schedule else frozenset({"weights"})

    def reported_metrics(self, val_metrics: list[str]) -> list[str]:
        """The metric it adds at the end of the run (with validation data)."""
        return ["ensemble_val_acc"] if val_metrics else []

    def on_fit_start(self, state: TrainState) -> None:
        if self.cycle_steps is None:
            self.cycle_steps = max(2, state.total_steps // self.cycles)
        self._scheduler = None
        if self.set_schedule:
            self._scheduler = to_lr_scheduler(state.optimizer, cyclic_cosine(self.cycle_steps, floor=self.floor))
            if self._sched_state:
                restore_scheduler(self._scheduler, self._sched_state)

    def on_step_end(self, state: TrainState) -> None:
        if self._scheduler is not None:
            self._scheduler.step()
        if state.step % self.cycle_steps == 0:
            snap = {k: v.detach().cpu().clone() for k, v in state.raw_model.state_dict().items()}
            self.snapshots.append(snap)
            if state.run_dir is not None and state.is_main:
                from trickbag.train.checkpoint import save_atomic

                save_atomic(snap, state.run_dir / "snapshots" / f"snapshot-{len(self.snapshots)}.pt")

    @torch.no_grad()
    def on_fit_end(self, state: TrainState) -> None:
        if not self.snapshots or state.val_data is None:
            return
        model, trainer = state.raw_model, state.trainer
        current = {k: v.clone() for k, v in model.state_dict().items()}
        outputs, accs = [], []
        targets = torch.cat([y for _, y in state.val_data]).cpu()
        for snap in self.snapshots:
            model.load_state_dict(snap)
            outputs.append(trainer.predict(state.val_data))
            accs.append((outputs[-1].argmax(1) == targets).float().mean().item())
        model.load_state_dict(current)
        probs = average_predictions(outputs)
        state.metrics["snapshot_val_acc"] = accs
        state.metrics["ensemble_val_acc"] = (probs.argmax(1) == targets).float().mean().item()
        if state.history:
            state.history[-1].update({k: state.metrics[k] for k in ("snapshot_val_acc", "ensemble_val_acc")})

    def state_dict(self) -> dict[str, Any]:
        return {"snapshots": self.snapshots, "cycle_steps": self.cycle_steps,
                "scheduler": self._scheduler.state_dict() if getattr(self, "_scheduler", None) else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.snapshots = list(state["snapshots"])
        self.cycle_steps = state["cycle_steps"]
        self._sched_state = state["scheduler"]
