"""Weight constraints as callbacks."""

from __future__ import annotations

from trickbag._validate import check_positive
from trickbag.optim import max_norm_
from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["MaxNorm"]


class MaxNorm(Callback):
    """After every update, rescale each output unit's weight vector of the parameters whose
    name contains ``target`` to L2 norm at most ``max_norm`` (:func:`~trickbag.optim.max_norm_`;
    Kim's text CNN: ``fc.weight``, 3).

    Example:
        >>> MaxNorm("fc.weight", 3.0)
        MaxNorm(target='fc.weight', max_norm=3.0, dim=0)
    """

    touches = frozenset({"weights"})

    def __init__(self, target: str = "fc.weight", max_norm: float = 3.0, dim: int = 0):
        check_positive("max_norm", max_norm)
        self.target, self.max_norm, self.dim = target, max_norm, dim

    def on_fit_start(self, state: TrainState) -> None:
        self._weights = [p for n, p in state.raw_model.named_parameters() if self.target in n]
        if not self._weights:
            names = [n for n, _ in state.raw_model.named_parameters()]
            raise ValueError(f"MaxNorm: no parameter name contains {self.target!r}; parameters: {names}")

    def on_step_end(self, state: TrainState) -> None:
        max_norm_(self._weights, self.max_norm, dim=self.dim)
