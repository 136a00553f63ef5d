"""Robustness in the loop: robust accuracy as a metric, and a guard against catastrophic overfitting."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from trickbag._validate import check_choice, check_nonnegative, check_positive_int
from trickbag.adversarial import ATTACKS, detect_catastrophic_overfitting, make_attack, robust_accuracy
from trickbag.train.callbacks._space import SPACES, DataSpace
from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["RobustAccuracy", "CatastrophicOverfittingGuard"]


class RobustAccuracy(Callback):
    """Robust accuracy of the model on the validation data: ``val_robust_acc`` in the metrics
    (and the history, the run's results, and ablation metrics: ``--metric val_robust_acc``),
    and ``test_robust_acc`` in a run's test results.

    Computed with :func:`~trickbag.adversarial.robust_accuracy` after the end-of-epoch
    validation, every ``every_epochs`` epochs and at the last one, on the first
    ``max_examples`` validation examples (PGD-20 costs 21 forward and backward passes per
    example). ``eps`` is on the data's own scale by default (``space="data"``: ``[0, 1]``
    pixels for images the loader normalises, clipped to ``[0, 1]``). It runs where it is
    listed: before EMA or SWA it measures their averaged weights, as ``val_acc`` does. The
    attack's random start has its own generator (``seed``), so evaluating does not change the
    training that follows.

    Example:
        >>> RobustAccuracy(eps=0.1).metric
        'robust_acc'
    """

    def __init__(self, attack: str = "pgd", eps: float = 0.1, steps: int = 20, alpha: float | None = None,
                 norm: str = "linf", max_examples: int | None = 1000, every_epochs: int = 1,
                 space: str = "data", clamp: tuple[float, float] | str | None = "auto", metric: str = "robust_acc",
                 seed: int = 0):
        check_choice("attack", attack, ATTACKS)
        check_nonnegative("eps", eps)
        check_positive_int("steps", steps)
        check_positive_int("every_epochs", every_epochs)
        if max_examples is not None:
            check_positive_int("max_examples", max_examples)
        check_choice("space", space, SPACES)
        make_attack(attack, eps=eps, alpha=alpha, steps=steps, norm=norm)  # validates alpha and norm now
        self.attack, self.eps, self.steps, self.alpha, self.norm = attack, eps, steps, alpha, norm
        self.max_examples, self.every_epochs, self.space, self.seed = max_examples, every_epochs, space, seed
        self.clamp = tuple(clamp) if isinstance(clamp, (list, tuple)) else clamp
        self.metric = metric

    def evaluate(self, state: TrainState, data: Any, prefix: str = "val") -> dict[str, float]:
        """``{prefix_robust_acc: value}`` on ``data`` (batches from a loader)."""
        space = DataSpace(state.raw_model, data, self.space, self.clamp)
        batches, n = [], 0
        for x, y in data:  # the whole pass, so that a loader's position ends where it started
            if self.max_examples is None or n < self.max_examples:
                batches.append((space.to_data(x.to(state.device)), y.to(state.device)))
                n += y.shape[0]
        value = robust_accuracy(space.model, batches, attack=self.attack, eps=self.eps, alpha=self.alpha,
                                steps=self.steps, norm=self.norm, clamp=space.clamp, max_examples=self.max_examples,
                                loss_fn=state.eval_criterion, seed=self.seed)
        return {f"{prefix}_{self.metric}": value}

    def on_eval_end(self, state: TrainState) -> None:
        # only the end-of-epoch validation (its metrics carry this epoch's number), not the
        # optional evaluations within an epoch
        if state.val_data is None or state.metrics.get("epoch") != state.epoch + 1:
            return
        if (state.epoch + 1) % self.every_epochs and state.epoch + 1 < state.epochs and state.step < state.total_steps:
            return
        state.metrics.update(self.evaluate(state, state.val_data, "val"))

    def test_metrics(self, state: TrainState, data: Any) -> dict[str, float]:
        """The same on a run's test data (``Run.fit`` calls it once, after training)."""
        return self.evaluate(state, data, "test")


class CatastrophicOverfittingGuard(Callback):
    """Watch single-step adversarial training for catastrophic overfitting and stop it (or warn)
    with the fix.

    Every ``every_steps`` updates (default: at the end of every epoch) the model's accuracy under
    FGSM and under PGD (``pgd_steps`` steps, random start) is measured on a fixed probe, the
    first ``probe_examples`` validation examples, and recorded as ``probe_fgsm_acc`` and
    ``probe_pgd_acc``. When the PGD accuracy has collapsed from its best (by ``drop``, or to
    ``1 - relative_drop`` of it) while the FGSM accuracy rose
    (:func:`~trickbag.adversarial.detect_catastrophic_overfitting`), it warns
    with the fix and, with ``action="stop"``, stops training and restores the weights of the
    best PGD accuracy (``restore_best``), Wong et al.'s early stopping.

    Example:
        >>> CatastrophicOverfittingGuard(eps=0.1).action
        'stop'
    """

    touches = frozenset({"weights"})

    def __init__(self, eps: float = 0.1, every_steps: int | None = None, probe_examples: int = 512,
                 pgd_steps: int = 10, alpha: float | None = None, drop: float = 0.2, relative_drop: float = 0.5,
                 min_drop: float = 0.05, action: str = "stop", restore_best: bool = True, space: str = "data",
                 clamp: tuple[float, float] | str | None = "auto", seed: int = 0):
        check_nonnegative("eps", eps)
        if every_steps is not None:
            check_positive_int("every_steps", every_steps)
        check_positive_int("probe_examples", probe_examples)
        check_positive_int("pgd_steps", pgd_steps)
        detect_catastrophic_overfitting([0.0], [0.0], drop=drop, relative_drop=relative_drop, min_drop=min_drop)
        check_choice("action", action, ("stop", "warn"))
        check_choice("space", space, SPACES)
        make_attack("pgd", eps=eps, alpha=alpha, steps=pgd_steps)
        self.eps, self.every_steps, self.probe_examples, self.pgd_steps = eps, every_steps, probe_examples, pgd_steps
        self.alpha, self.drop, self.action, self.restore_best = alpha, drop, action, restore_best
        self.relative_drop, self.min_drop = relative_drop, min_drop
        self.space, self.seed = space, seed
        self.clamp = tuple(clamp) if isinstance(clamp, (list, tuple)) else clamp
        self.pgd_acc: list[float] = []
        self.fgsm_acc: list[float] = []
        self.checked_at: list[int] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.detected: str | None = None

    def on_fit_start(self, state: TrainState) -> None:
        data = state.val_data if state.val_data is not None else None
        if data is None:
            raise ValueError("CatastrophicOverfittingGuard measures on validation data: give the trainer val_data")
        self._space = DataSpace(state.raw_model, data, self.space, self.clamp)
        xs, ys, n = [], [], 0
        for x, y in data:  # the whole pass, so that a loader's position ends where it started
            if n < self.probe_examples:
                take = min(self.probe_examples - n, x.shape[0])
                xs.append(self._space.to_data(x[:take].to(state.device)))
                ys.append(y[:take].to(state.device))
                n += take
        self._probe = (torch.cat(xs), torch.cat(ys))

    def _check(self, state: TrainState) -> None:
        model, clamp = self._space.model, self._space.clamp
        kw = dict(eps=self.eps, clamp=clamp, loss_fn=state.eval_criterion, seed=self.seed)
        fgsm_acc = robust_accuracy(model, self._probe, attack="fgsm", **kw)
        pgd_acc = robust_accuracy(model, self._probe, attack="pgd", steps=self.pgd_steps, alpha=self.alpha, **kw)
        state.metrics.update({"probe_fgsm_acc": fgsm_acc, "probe_pgd_acc": pgd_acc})
        if not self.pgd_acc or pgd_acc > max(self.pgd_acc):
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in state.raw_model.state_dict().items()}
        self.pgd_acc.append(pgd_acc)
        self.fgsm_acc.append(fgsm_acc)
        self.checked_at.append(state.step)
        found = detect_catastrophic_overfitting(self.pgd_acc, self.fgsm_acc, drop=self.drop,
                                                relative_drop=self.relative_drop, min_drop=self.min_drop)
        if found is None or self.detected is not None:
            return
        message = (f"{found.message()} (PGD best at step {self.checked_at[found.best_index]}, "
                   f"collapsed by step {state.step})")
        self.detected = message
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        if self.action == "stop":
            if self.restore_best and self.best_state is not None:
                state.raw_model.load_state_dict(self.best_state)
            state.stop(message)

    def on_step_end(self, state: TrainState) -> None:
        if self.every_steps is not None and state.step % self.every_steps == 0:
            self._check(state)

    def on_epoch_end(self, state: TrainState) -> None:
        if self.every_steps is None:
            self._check(state)

    def state_dict(self) -> dict[str, Any]:
        return {"pgd_acc": list(self.pgd_acc), "fgsm_acc": list(self.fgsm_acc), "checked_at": list(self.checked_at),
                "best_state": self.best_state, "detected": self.detected}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pgd_acc, self.fgsm_acc = list(state["pgd_acc"]), list(state["fgsm_acc"])
        self.checked_at, self.best_state, self.detected = list(state["checked_at"]), state["best_state"], state["detected"]
