"""Embedding-space adversarial training (FGM, PGD or FreeLB) for text models."""

from __future__ import annotations

from trickbag._validate import check_choice, check_nonnegative, check_positive, check_positive_int
from trickbag.adversarial import EMBEDDING_METHODS, EmbeddingAdversary
from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["EmbeddingAdversarial"]


class EmbeddingAdversarial(Callback):
    """After the clean backward pass, perturb the named embedding along its gradient, add the
    adversarial loss's gradient, and restore the embedding bit for bit before the update: a thin
    adapter over :class:`~trickbag.adversarial.EmbeddingAdversary` (FGM: Miyato et al. 2017; PGD:
    ``steps`` projected steps, the last one's gradient kept; FreeLB: every step's gradient
    accumulated, Zhu et al. 2020).

    Example:
        >>> EmbeddingAdversarial("fgm", target="embedding", epsilon=0.5)
        EmbeddingAdversarial(method='fgm', target='embedding', epsilon=0.5, alpha=0.3, steps=3)
    """

    touches = frozenset({"gradients", "weights"})

    def __init__(self, method: str = "fgm", target: str = "embedding", epsilon: float = 1.0,
                 alpha: float = 0.3, steps: int = 3):
        check_choice("method", method, EMBEDDING_METHODS)
        check_nonnegative("epsilon", epsilon)
        check_positive("alpha", alpha)
        check_positive_int("steps", steps)
        self.method, self.target, self.epsilon, self.alpha, self.steps = method, target, epsilon, alpha, steps

    def on_fit_start(self, state: TrainState) -> None:
        self._adversary = EmbeddingAdversary(state.raw_model, self.target, epsilon=self.epsilon, method=self.method,
                                             alpha=self.alpha, steps=self.steps)

    def on_after_backward(self, state: TrainState) -> None:
        trainer = state.trainer

        def closure():
            with trainer.autocast():
                return trainer.compute_loss(state.model(state.inputs), state)

        self._adversary.add_adversarial_gradients(closure, trainer.backward)
