"""Multi-task tricks in the loop: the soft-sharing penalty."""

from __future__ import annotations

from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["SoftSharingPenalty"]


class SoftSharingPenalty(Callback):
    """Add the model's soft-sharing penalty (:meth:`trickbag.multitask.SoftSharing.penalty`)
    to the loss before every backward pass."""

    touches = frozenset({"loss"})

    def on_fit_start(self, state: TrainState) -> None:
        if not callable(getattr(state.raw_model, "penalty", None)):
            raise ValueError(f"SoftSharingPenalty needs a trickbag.multitask.SoftSharing model, got "
                             f"{type(state.raw_model).__name__}")

    def on_before_backward(self, state: TrainState) -> None:
        state.loss = state.loss + state.raw_model.penalty()
