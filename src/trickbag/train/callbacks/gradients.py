"""Gradient transforms as callbacks: they attach torch step pre-hooks for the run."""

from __future__ import annotations

from trickbag.optim import attach_grad_clipping, attach_gradient_centralization, attach_gradient_noise
from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["GradientClipping", "GradientCentralization", "GradientNoise"]


class _Hooked(Callback):
    touches = frozenset({"gradients"})

    def _attach(self, state: TrainState):  # pragma: no cover - abstract
        raise NotImplementedError

    def on_fit_start(self, state: TrainState) -> None:
        self._handle = self._attach(state)

    def on_fit_end(self, state: TrainState) -> None:
        self._handle.remove()


class GradientClipping(_Hooked):
    """Clip gradients before every update (global norm ``max_norm`` and/or value ``max_value``).
    With fp16 the hook sees the true, unscaled gradients, fused optimizers included: the trainer
    calls ``scaler.unscale_(optimizer)`` before ``scaler.step`` whenever a step pre-hook is
    attached (``GradScaler`` alone leaves a fused optimizer's gradients scaled until its
    kernel runs)."""

    def __init__(self, max_norm: float | None = 1.0, max_value: float | None = None, norm_type: float = 2.0):
        if max_norm is None and max_value is None:
            raise ValueError("GradientClipping needs max_norm or max_value")
        self.max_norm, self.max_value, self.norm_type = max_norm, max_value, norm_type

    def _attach(self, state: TrainState):
        return attach_grad_clipping(state.optimizer, max_norm=self.max_norm, max_value=self.max_value,
                                    norm_type=self.norm_type)


class GradientCentralization(_Hooked):
    """Centralise weight gradients before every update (Yong et al. 2020)."""

    def __init__(self, conv_only: bool = False):
        self.conv_only = conv_only

    def _attach(self, state: TrainState):
        return attach_gradient_centralization(state.optimizer, conv_only=self.conv_only)


class GradientNoise(_Hooked):
    """Add annealed Gaussian noise to the gradients before every update (Neelakantan et al.
    2015): variance ``eta / (1 + step) ** gamma``. The noise of update ``t`` comes from a
    generator seeded by the run's seed and ``t``, so runs repeat, resumes are exact and every
    data-parallel rank adds the same noise."""

    def __init__(self, eta: float = 0.3, gamma: float = 0.55):
        self.eta, self.gamma = eta, gamma

    def _attach(self, state: TrainState):
        return attach_gradient_noise(state.optimizer, eta=self.eta, gamma=self.gamma, seed=state.seed,
                                     step_fn=lambda: state.step)
