"""Tricks that rewrite the training batch: augmentation pipelines, mixup, cutmix, adversarial examples."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from trickbag._validate import check_choice, check_positive, check_range
from trickbag.adversarial import fast_fgsm, fgsm, ifgsm, pgd
from trickbag.augment import Compose, Mixed, cutmix_batch, mix_targets, mixup_batch
from trickbag.train.callbacks._space import SPACES, DataSpace
from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["Augment", "Mixup", "CutMix", "MixupCutMix", "AdversarialTraining"]


class Augment(Callback):
    """Apply an augmentation (or a list of them, composed) to every training batch on the device.

    Example:
        >>> from trickbag.augment import Cutout
        >>> Augment(Cutout(size=8))
        Augment(ops=[Cutout(size=8)])
    """

    touches = frozenset({"inputs"})

    def __init__(self, ops: Callable | Sequence[Callable]):
        ops = list(ops) if isinstance(ops, Sequence) else [ops]
        if not ops or not all(callable(op) for op in ops):
            raise ValueError(f"Augment takes augmentation callables, got {ops!r}")
        for op in ops:
            if getattr(op, "uses_indices", False):
                raise ValueError(
                    f"{op!r} needs each image's index in the data set and the epoch, which the Augment "
                    "callback does not have: give it to the DeviceLoader's augment instead"
                )
        self.ops = ops
        self._pipeline = ops[0] if len(ops) == 1 else Compose(ops)

    def __repr__(self) -> str:
        return f"Augment(ops={self.ops!r})"

    @property
    def name(self) -> str:
        return f"Augment[{'+'.join(type(op).__name__ for op in self.ops)}]"

    def on_batch_start(self, state: TrainState) -> None:
        state.inputs = self._pipeline(state.inputs)


class _Mixer(Callback):
    touches = frozenset({"inputs", "targets"})
    rewrites_batch = True

    def __init__(self, alpha: float, soft_targets: bool = False, num_classes: int | None = None, prob: float = 1.0):
        check_positive("alpha", alpha)
        check_range("prob", prob, 0.0, 1.0)
        self.alpha, self.soft_targets, self.num_classes, self.prob = alpha, soft_targets, num_classes, prob

    def _mix(self, x, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def _apply(self, state: TrainState) -> bool:
        """Mix this batch? A draw from torch's CPU generator (its state is in checkpoints)."""
        return self.prob >= 1.0 or (self.prob > 0.0 and float(torch.rand(())) < self.prob)

    def on_batch_start(self, state: TrainState) -> None:
        if not self._apply(state):
            if self.soft_targets:  # keep one target format for the loss
                state.targets = mix_targets(Mixed(state.inputs, state.targets, state.targets,
                                                  torch.ones((), device=state.inputs.device)), self.num_classes)
            return
        m = self._mix(state.inputs, state.targets)
        state.inputs = m.inputs
        if self.soft_targets:
            state.targets = mix_targets(m, self.num_classes)
        else:
            state.mix = m  # the trainer mixes the loss: works with index, soft and multi-label targets


class Mixup(_Mixer):
    """Mixup (Zhang et al. 2018) on every training batch (on a random ``prob`` of them). By
    default the loss is mixed, ``lam * L(out, y_a) + (1 - lam) * L(out, y_b)``;
    ``soft_targets=True`` passes mixed probability targets to the loss instead (which must
    accept them; needs ``num_classes`` for index labels)."""

    def __init__(self, alpha: float = 0.2, soft_targets: bool = False, num_classes: int | None = None,
                 prob: float = 1.0):
        super().__init__(alpha, soft_targets, num_classes, prob)

    def _mix(self, x, y):
        return mixup_batch(x, y, alpha=self.alpha)


class CutMix(_Mixer):
    """CutMix (Yun et al. 2019) on every training batch (on a random ``prob`` of them), mixing the
    loss by the pasted area."""

    def __init__(self, alpha: float = 1.0, soft_targets: bool = False, num_classes: int | None = None,
                 prob: float = 1.0):
        super().__init__(alpha, soft_targets, num_classes, prob)

    def _mix(self, x, y):
        return cutmix_batch(x, y, alpha=self.alpha)


class MixupCutMix(_Mixer):
    """Mixup or CutMix, one per batch, with timm's ``Mixup(mixup_alpha, cutmix_alpha, prob,
    switch_prob)`` semantics: a batch is mixed with probability ``prob``, by CutMix with
    probability ``switch_prob`` and by mixup otherwise. Naming both ``mixup`` and ``cutmix`` in a
    config's tricks builds this.

    Example:
        >>> MixupCutMix(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5).name
        'MixupCutMix'
    """

    def __init__(self, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, soft_targets: bool = False, num_classes: int | None = None):
        check_positive("mixup_alpha", mixup_alpha)
        check_positive("cutmix_alpha", cutmix_alpha)
        check_range("switch_prob", switch_prob, 0.0, 1.0)
        super().__init__(mixup_alpha, soft_targets, num_classes, prob)
        self.mixup_alpha, self.cutmix_alpha, self.switch_prob = mixup_alpha, cutmix_alpha, switch_prob

    def _mix(self, x, y):
        if self.switch_prob > 0.0 and (self.switch_prob >= 1.0 or float(torch.rand(())) < self.switch_prob):
            return cutmix_batch(x, y, alpha=self.cutmix_alpha)
        return mixup_batch(x, y, alpha=self.mixup_alpha)


class AdversarialTraining(Callback):
    """Replace a fraction ``ratio`` of every training batch by adversarial examples crafted
    against the current model: FGSM (Goodfellow et al. 2015), fast FGSM from a random start
    (Wong et al. 2020), I-FGSM (Kurakin et al. 2017) or PGD (Madry et al. 2018; ``ratio=1``
    is Madry's adversarial training).

    ``space="model"`` (default): ``eps`` is in the units of the batches the model sees (after
    normalisation) and ``clamp`` bounds them (None: unbounded). ``space="data"``: ``eps`` is on
    the data's own scale, ``[0, 1]`` pixels for images the loader normalises; the attack undoes
    the normalisation and clips to ``[0, 1]`` (``clamp="auto"``). ``alpha`` defaults to
    ``1.25 * eps`` for fast FGSM and ``eps / 4`` otherwise. The attacks run the model in eval
    mode (BatchNorm uses its running statistics) and leave it as they found it.

    Example:
        >>> AdversarialTraining("fast_fgsm", eps=0.1, ratio=1.0, space="data").alpha
        0.125
    """

    touches = frozenset({"inputs"})
    needs_hard_labels = True

    def __init__(
        self,
        method: str = "fgsm",
        eps: float = 0.03,
        alpha: float | None = None,
        steps: int = 3,
        ratio: float = 0.5,
        clamp: tuple[float, float] | str | None = "auto",
        space: str = "model",
    ):
        check_choice("method", method, ("fgsm", "fast_fgsm", "ifgsm", "pgd"))
        check_positive("eps", eps)
        check_range("ratio", ratio, 0.0, 1.0, low_open=True)
        check_choice("space", space, SPACES)
        self.method, self.eps, self.steps, self.ratio, self.space = method, eps, steps, ratio, space
        self.alpha = alpha if alpha is not None else (1.25 * eps if method == "fast_fgsm" else eps / 4)
        check_positive("alpha", self.alpha)
        self.clamp = tuple(clamp) if isinstance(clamp, (list, tuple)) else clamp

    def on_fit_start(self, state: TrainState) -> None:
        self._space = DataSpace(state.raw_model, state.train_data, self.space, self.clamp)

    def on_batch_start(self, state: TrainState) -> None:
        x, y = state.inputs, state.targets
        k = max(1, round(self.ratio * x.shape[0]))
        space = self._space
        model, loss, clamp = space.model, state.eval_criterion, space.clamp
        xs = space.to_data(x[:k])
        if self.method == "fgsm":
            adv = fgsm(model, xs, y[:k], eps=self.eps, loss_fn=loss, clamp=clamp)
        elif self.method == "fast_fgsm":
            adv = fast_fgsm(model, xs, y[:k], eps=self.eps, alpha=self.alpha, loss_fn=loss, clamp=clamp)
        elif self.method == "ifgsm":
            adv = ifgsm(model, xs, y[:k], eps=self.eps, alpha=self.alpha, steps=self.steps, loss_fn=loss, clamp=clamp)
        else:
            adv = pgd(model, xs, y[:k], eps=self.eps, alpha=self.alpha, steps=self.steps, loss_fn=loss, clamp=clamp)
        adv = space.to_model(adv, x)
        state.inputs = torch.cat([adv, x[k:]]) if k < x.shape[0] else adv
