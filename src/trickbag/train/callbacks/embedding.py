"""Embedding-space adversarial training (FGM or PGD) for text models."""

from __future__ import annotations

from trickbag._validate import check_choice, check_nonnegative, check_positive, check_positive_int
from trickbag.adversarial import FGM, PGDEmbedding
from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["EmbeddingAdversarial"]


class EmbeddingAdversarial(Callback):
    """After the clean backward pass, perturb the named embedding along its gradient, add the
    adversarial loss's gradient, and restore the embedding bit for bit before the update
    (FGM: Miyato et al. 2017; PGD: ``steps`` projected steps)."""

    touches = frozenset({"gradients", "weights"})

    def __init__(self, method: str = "fgm", target: str = "embedding", epsilon: float = 1.0,
                 alpha: float = 0.3, steps: int = 3):
        check_choice("method", method, ("fgm", "pgd"))
        check_nonnegative("epsilon", epsilon)
        check_positive("alpha", alpha)
        check_positive_int("steps", steps)
        self.method, self.target, self.epsilon, self.alpha, self.steps = method, target, epsilon, alpha, steps

    def on_fit_start(self, state: TrainState) -> None:
        if self.method == "fgm":
            self._attack = FGM(state.raw_model, self.target, self.epsilon)
        else:
            self._attack = PGDEmbedding(state.raw_model, self.target, self.epsilon, self.alpha, self.steps)

    def _adversarial_backward(self, state: TrainState) -> None:
        trainer = state.trainer
        with trainer.autocast():
            loss = trainer.compute_loss(state.model(state.inputs), state)
        trainer.backward(loss)

    def on_after_backward(self, state: TrainState) -> None:
        attack = self._attack
        if self.method == "fgm":
            attack.attack()
            self._adversarial_backward(state)
            attack.restore()
            return
        attack.backup_grad()
        for t in range(self.steps):
            attack.attack(is_first_attack=(t == 0))
            if t != self.steps - 1:
                state.optimizer.zero_grad(set_to_none=False)
            else:
                attack.restore_grad()
            self._adversarial_backward(state)
        attack.restore()
