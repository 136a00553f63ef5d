"""Evaluation-side tricks: test-time augmentation."""

from __future__ import annotations

from functools import partial

from trickbag.augment import tta_logits, tta_views
from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["TestTimeAugmentation"]


class TestTimeAugmentation(Callback):
    """Evaluate with :func:`~trickbag.augment.tta_logits`: logits averaged over the mirror image
    (``flip``) and ``translate``-pixel shifts. Training is unchanged.

    By default only the final evaluation of the run and everything evaluated after ``fit``
    (the test split, ``predict``) use it, since every view costs a forward pass; with
    ``every_epoch`` each epoch's validation does too. An evaluation-side trick: in an ablation,
    arms differ in their evaluation only when this is the arm.
    """

    __test__ = False  # not a pytest class, despite its name

    def __init__(self, flip: bool = True, translate: int = 1, every_epoch: bool = False):
        import torch

        tta_views(torch.zeros(1, 1, translate + 1, translate + 1), flip=flip, translate=translate)  # validates
        self.flip, self.translate, self.every_epoch = flip, translate, every_epoch
        self._forward = partial(_tta_forward, flip=flip, translate=translate)

    def _final(self, state: TrainState) -> bool:
        return state.epoch + 1 >= state.epochs or state.step >= state.total_steps or state.stop_training

    def on_eval_start(self, state: TrainState) -> None:
        if self.every_epoch or self._final(state):
            state.eval_forward = self._forward

    def on_eval_end(self, state: TrainState) -> None:
        state.eval_forward = None

    def on_fit_end(self, state: TrainState) -> None:
        state.eval_forward = self._forward  # the test split and predict() after training


def _tta_forward(model, x, *, flip: bool, translate: int):
    return tta_logits(model, x, flip=flip, translate=translate)
