"""Learning-rate schedules as a callback, stepped once per optimizer update."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from trickbag.schedules import to_lr_scheduler
from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["LRSchedule", "restore_scheduler"]


def restore_scheduler(scheduler: Any, state: dict[str, Any]) -> None:
    """Load a scheduler's state and put its last learning rates back into the optimizer.

    Creating a torch scheduler performs an initial step that overwrites the optimizer's
    learning rate with the schedule's first value; a resumed run must undo that.
    """
    scheduler.load_state_dict(state)
    for group, lr in zip(scheduler.optimizer.param_groups, scheduler.get_last_lr()):
        group["lr"] = lr


class LRSchedule(Callback):
    """Drive the optimizer's learning rate with a ``step -> multiplier`` schedule (through a
    ``LambdaLR``) or with any torch LR scheduler, stepped after every update.

    Example:
        >>> from trickbag.schedules import cosine_decay
        >>> LRSchedule(cosine_decay(100))
        LRSchedule(schedule=cosine_decay(total_steps=100, floor=0.0))
    """

    touches = frozenset({"lr"})

    def __init__(self, schedule: Callable[[int], float] | torch.optim.lr_scheduler.LRScheduler):
        if not callable(schedule) and not isinstance(schedule, torch.optim.lr_scheduler.LRScheduler):
            raise ValueError(f"schedule must be a step -> multiplier function or a torch LR scheduler, got {schedule!r}")
        self.schedule = schedule
        self._scheduler: Any = None
        self._pending: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"LRSchedule(schedule={self.schedule!r})"

    def on_fit_start(self, state: TrainState) -> None:
        if isinstance(self.schedule, torch.optim.lr_scheduler.LRScheduler):
            self._scheduler = self.schedule
        elif self._scheduler is None:
            self._scheduler = to_lr_scheduler(state.optimizer, self.schedule)
        if self._pending is not None:
            restore_scheduler(self._scheduler, self._pending)
            self._pending = None

    def on_step_end(self, state: TrainState) -> None:
        self._scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return self._scheduler.state_dict() if self._scheduler is not None else (self._pending or {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._pending = state
