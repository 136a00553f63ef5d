"""Loss tricks in the loop: label smoothing, flooding, weight penalties."""

from __future__ import annotations

import torch

from trickbag._validate import check_nonnegative, check_range
from trickbag.losses import LabelSmoothingCrossEntropy, cross_entropy_arguments, flood, l1_penalty, l2_penalty
from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["LabelSmoothing", "Flooding", "WeightPenalty"]


class LabelSmoothing(Callback):
    """Replace the cross-entropy criterion by :class:`~trickbag.losses.LabelSmoothingCrossEntropy`
    for the run (evaluation keeps the plain loss), carrying over the criterion's class
    ``weight``, ``reduction`` and ``ignore_index`` (padding tokens stay ignored). With mixup the
    loss is mixed over smoothed targets: each target is smoothed, then mixed."""

    touches = frozenset({"criterion", "loss"})

    def __init__(self, smoothing: float = 0.1):
        check_range("smoothing", smoothing, 0.0, 1.0, high_open=True)
        self.smoothing = smoothing

    def on_fit_start(self, state: TrainState) -> None:
        arguments = cross_entropy_arguments(state.criterion)
        if arguments is None:
            crit = state.criterion
            what = type(crit).__name__
            if isinstance(crit, torch.nn.CrossEntropyLoss):
                what += f" with label_smoothing={crit.label_smoothing} (it smooths already)"
            raise ValueError(
                f"LabelSmoothing replaces a cross-entropy loss, but the loss is {what}; "
                "label_smoothing and this loss cannot be combined (smooth inside your loss instead)"
            )
        self._original = state.criterion
        state.criterion = LabelSmoothingCrossEntropy(self.smoothing, **arguments)

    def on_fit_end(self, state: TrainState) -> None:
        state.criterion = self._original


class Flooding(Callback):
    """Flood the training loss at ``b`` (Ishida et al. 2020), after mixing and before penalties."""

    touches = frozenset({"loss"})

    def __init__(self, b: float = 0.05):
        check_nonnegative("b", b)
        self.b = b

    def on_after_loss(self, state: TrainState) -> None:
        state.loss = flood(state.loss, self.b)


class WeightPenalty(Callback):
    """Add ``l1 * sum|w| + l2/2 * sum w^2`` over the weights (not biases or norms) to the loss."""

    touches = frozenset({"loss"})

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        check_nonnegative("l1", l1)
        check_nonnegative("l2", l2)
        if l1 == 0 and l2 == 0:
            raise ValueError("WeightPenalty needs l1 > 0 or l2 > 0")
        self.l1, self.l2 = l1, l2

    def on_before_backward(self, state: TrainState) -> None:
        if self.l1:
            state.loss = state.loss + l1_penalty(state.raw_model, self.l1)
        if self.l2:
            state.loss = state.loss + l2_penalty(state.raw_model, self.l2)
