"""The callback base class and the checks that tell when two tricks would fight."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

from trickbag.train.state import TrainState

__all__ = ["Callback", "TOUCHES", "check_compatible"]

#: What a loop trick may declare it touches.
TOUCHES = frozenset({"inputs", "targets", "loss", "gradients", "lr", "weights", "criterion"})


class Callback:
    """Base class: override ``on_<event>`` methods (see :class:`~trickbag.train.Event`).

    Class attributes declare what the trick touches, so the trainer can refuse combinations
    that would fight before the first step:

    - ``touches``: a subset of :data:`TOUCHES`;
    - ``rewrites_batch``: replaces inputs and targets together (mixup, cutmix): at most one;
    - ``needs_hard_labels``: needs the unmixed class labels of the batch it sees.

    ``state_dict()``/``load_state_dict()`` carry what a resumed run needs.
    """

    touches: ClassVar[frozenset[str]] = frozenset()
    rewrites_batch: ClassVar[bool] = False
    needs_hard_labels: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return type(self).__name__

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def sets_lr(self) -> bool:
        """Whether this callback owns the learning rate (at most one may)."""
        return "lr" in self.touches

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and _plain(v))
        return f"{self.name}({fields})"

    # Every event, as a no-op. Overriding one subscribes the callback to it.
    def on_fit_start(self, state: TrainState) -> None: ...
    def on_epoch_start(self, state: TrainState) -> None: ...
    def on_batch_start(self, state: TrainState) -> None: ...
    def on_after_forward(self, state: TrainState) -> None: ...
    def on_after_loss(self, state: TrainState) -> None: ...
    def on_before_backward(self, state: TrainState) -> None: ...
    def on_after_backward(self, state: TrainState) -> None: ...
    def on_step_end(self, state: TrainState) -> None: ...
    def on_eval_start(self, state: TrainState) -> None: ...
    def on_eval_end(self, state: TrainState) -> None: ...
    def on_epoch_end(self, state: TrainState) -> None: ...
    def on_fit_end(self, state: TrainState) -> None: ...


def _plain(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool, type(None), tuple))


def check_compatible(callbacks: Sequence[Callback], *, criterion: Any = None) -> None:
    """Raise ``ValueError`` naming both tricks when two would fight; warn on doubtful pairs."""
    mixers = [c for c in callbacks if c.rewrites_batch]
    if len(mixers) > 1:
        raise ValueError(
            f"{mixers[0].name} and {mixers[1].name} both rewrite the same batch (inputs and targets); "
            "use one of them per run (or alternate them in a custom callback)"
        )
    lr_owners = [c for c in callbacks if c.sets_lr()]
    if len(lr_owners) > 1:
        raise ValueError(
            f"{lr_owners[0].name} and {lr_owners[1].name} both set the learning rate of one optimizer; "
            "keep one schedule (compose schedules with trickbag.schedules.join)"
        )
    for i, cb in enumerate(callbacks):
        if cb.needs_hard_labels:
            for mixer in mixers:
                if callbacks.index(mixer) < i:
                    raise ValueError(
                        f"{cb.name} needs the batch's hard labels but runs after {mixer.name}, which mixes "
                        f"them; list {cb.name} before {mixer.name}"
                    )
    soft = [c for c in mixers if getattr(c, "soft_targets", False)]
    if soft and criterion is not None and not _accepts_soft_targets(criterion):
        raise ValueError(
            f"{soft[0].name}(soft_targets=True) passes mixed probability targets, but the loss "
            f"{type(criterion).__name__} needs hard class labels; use soft_targets=False (mix the loss) "
            "or a loss that takes probabilities (cross_entropy, LabelSmoothingCrossEntropy)"
        )
    averagers = [c for c in callbacks if c.name in ("EMA", "SWA")]
    if len(averagers) > 1:
        warnings.warn(
            f"{averagers[0].name} and {averagers[1].name} both average weights; the model ends with "
            f"{averagers[-1].name}'s average",
            stacklevel=3,
        )


def _accepts_soft_targets(criterion: Any) -> bool:
    import torch.nn.functional as F
    from torch import nn

    from trickbag.losses import LabelSmoothingCrossEntropy

    if criterion in (F.cross_entropy, F.binary_cross_entropy_with_logits):
        return True
    return isinstance(criterion, (nn.CrossEntropyLoss, nn.BCEWithLogitsLoss, LabelSmoothingCrossEntropy))
