"""Tricks for long-tailed data and calibration that swap the criterion or the evaluation
forward: class-balanced losses, logit adjustment, temperature scaling."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from trickbag._validate import check_nonnegative, check_range
from trickbag.calibration import fit_temperature
from trickbag.losses import ClassBalancedLoss, FocalLoss, LogitAdjustedLoss, SigmoidFocalLoss, class_counts
from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["ClassBalanced", "LogitAdjustment", "TemperatureScaling", "training_targets"]


def training_targets(data: Any) -> Tensor:
    """The class indices of a training loader's whole data set: a ``DeviceLoader``'s
    ``targets``, a ``TorchLoader``'s data set's ``targets``, else every batch's targets."""
    for holder in (data, getattr(data, "data", None)):
        t = getattr(holder, "targets", None)
        if isinstance(t, Tensor):
            return t
    return torch.cat([y.reshape(-1) for _, y in data])


def _base_loss(criterion: Any) -> tuple[str, float]:
    """The class-balanced form of the run's criterion: (loss name, gamma)."""
    if isinstance(criterion, FocalLoss):
        return "focal", criterion.gamma
    if isinstance(criterion, SigmoidFocalLoss):
        return "sigmoid_focal", criterion.gamma
    if isinstance(criterion, nn.BCEWithLogitsLoss):
        return "sigmoid", 0.0
    if isinstance(criterion, nn.CrossEntropyLoss) and criterion.weight is None and criterion.label_smoothing == 0:
        return "cross_entropy", 0.0
    if criterion is torch.nn.functional.cross_entropy:
        return "cross_entropy", 0.0
    raise ValueError(
        f"class_balanced re-weights cross_entropy, focal_loss, sigmoid_focal_loss or bce, but the loss is "
        f"{type(criterion).__name__}; pick one of those (a weighted or smoothed cross-entropy already "
        "re-weights: use trickbag.losses.class_balanced_loss in your own loss instead)"
    )


class ClassBalanced(Callback):
    """Re-weight the run's loss by class-balanced weights (Cui et al. 2019) counted on the
    training data at the start of ``fit``: cross-entropy, focal, sigmoid (``bce``) and sigmoid
    focal losses keep their kind and ``gamma`` (:class:`~trickbag.losses.ClassBalancedLoss`).
    Validation keeps the plain loss; sigmoid losses are evaluated on one-hot targets."""

    touches = frozenset({"criterion", "loss"})

    def __init__(self, beta: float = 0.9999):
        check_range("beta", beta, 0.0, 1.0, high_open=True)
        self.beta = beta

    def on_fit_start(self, state: TrainState) -> None:
        loss, gamma = _base_loss(state.criterion)
        counts = class_counts(training_targets(state.train_data))
        self._original = (state.criterion, state.eval_criterion)
        state.criterion = ClassBalancedLoss(counts, beta=self.beta, loss=loss, gamma=gamma).to(state.device)
        if loss.startswith("sigmoid"):  # the plain sigmoid loss on one-hot targets
            state.eval_criterion = ClassBalancedLoss(counts, beta=0.0, loss=loss, gamma=gamma).to(state.device)
        self.weights = state.criterion.weights.tolist()

    def on_fit_end(self, state: TrainState) -> None:
        state.criterion, state.eval_criterion = self._original


class LogitAdjustment(Callback):
    """Train with the logit-adjusted cross-entropy (Menon et al. 2021), the class priors counted
    on the training data at the start of ``fit``; predictions use the raw logits."""

    touches = frozenset({"criterion", "loss"})

    def __init__(self, tau: float = 1.0):
        check_nonnegative("tau", tau)
        self.tau = tau

    def on_fit_start(self, state: TrainState) -> None:
        if _base_loss(state.criterion)[0] != "cross_entropy":
            raise ValueError(f"logit_adjustment replaces a cross-entropy loss, but the loss is "
                             f"{type(state.criterion).__name__}")
        self._original = state.criterion
        counts = class_counts(training_targets(state.train_data))
        state.criterion = LogitAdjustedLoss(counts, tau=self.tau).to(state.device)

    def on_fit_end(self, state: TrainState) -> None:
        state.criterion = self._original


class TemperatureScaling(Callback):
    """At the end of ``fit``, fit a temperature on the validation split
    (:func:`~trickbag.calibration.fit_temperature`) and divide the logits by it in every later
    evaluation and prediction (the test split, ``predict``); reports ``temperature`` and the
    validation loss after scaling (``calibrated_val_loss``). Weights and accuracy are unchanged.
    Composes with test-time augmentation (it scales the averaged logits); list it after EMA and
    SWA, whose averaged weights arrive at the end of ``fit`` too."""

    def __init__(self, max_iter: int = 200):
        self.max_iter = max_iter
        self.temperature: float | None = None

    def on_fit_end(self, state: TrainState) -> None:
        if state.val_data is None:
            raise ValueError("temperature_scaling fits on the validation split, but the run has none "
                             "(set data.val_fraction > 0)")
        trainer = state.trainer
        logits = trainer.predict(state.val_data)
        targets = torch.cat([y.reshape(-1).cpu() for _, y in state.val_data])
        self.temperature = fit_temperature(logits, targets, max_iter=self.max_iter)
        inner = state.eval_forward
        t = self.temperature

        def scaled(model: nn.Module, x: Tensor) -> Tensor:
            return (inner(model, x) if inner is not None else model(x)) / t

        state.eval_forward = scaled
        metrics = {"temperature": t, **trainer.evaluate(state.val_data, prefix="calibrated_val")}
        metrics.pop("calibrated_val_acc", None)
        metrics.pop("calibrated_val_top5", None)
        state.metrics.update(metrics)
        if state.history:
            state.history[-1].update(metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.temperature = state.get("temperature")
