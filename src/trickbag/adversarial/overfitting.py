"""Catastrophic overfitting of single-step adversarial training: detect it from two accuracies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trickbag._validate import check_range

__all__ = ["CatastrophicOverfitting", "detect_catastrophic_overfitting", "CATASTROPHIC_OVERFITTING_FIX"]

#: What to do about it, in the words of the papers that found it.
CATASTROPHIC_OVERFITTING_FIX = (
    "the model has learned to mask its gradient at the clean point instead of becoming robust. "
    "Fixes: FGSM from a random start with a step of 1.25 * eps or less (method='fast_fgsm', Wong et al. "
    "2020); stop early and keep the weights of the best robust accuracy (restore_best=True); a smaller "
    "eps or a shorter schedule; or a multi-step attack (PGD-2 or more, method='pgd')"
)


@dataclass(frozen=True)
class CatastrophicOverfitting:
    """A detection: where the robust accuracy peaked and where it collapsed."""

    best_index: int
    index: int
    pgd_best: float
    pgd_now: float
    fgsm_best: float
    fgsm_now: float

    def message(self) -> str:
        return (
            f"catastrophic overfitting: PGD accuracy fell from {self.pgd_best:.3f} (check {self.best_index}) to "
            f"{self.pgd_now:.3f} (check {self.index}) while FGSM accuracy rose from {self.fgsm_best:.3f} to "
            f"{self.fgsm_now:.3f}: {CATASTROPHIC_OVERFITTING_FIX}"
        )


def detect_catastrophic_overfitting(
    pgd_acc: Sequence[float],
    fgsm_acc: Sequence[float],
    *,
    drop: float = 0.2,
    relative_drop: float = 0.5,
    min_drop: float = 0.05,
) -> CatastrophicOverfitting | None:
    r"""Has single-step adversarial training overfitted catastrophically at the latest check?

    Catastrophic overfitting (Wong et al. 2020) shows as two accuracies on the same examples
    moving apart: robust accuracy under a multi-step attack (PGD) collapses while accuracy
    under the single-step attack the model trains on (FGSM) rises. With :math:`b` the check of
    the best PGD accuracy so far and :math:`t` the latest one, it is detected when FGSM accuracy
    rose, :math:`a^{fgsm}_t > a^{fgsm}_b`, and PGD accuracy collapsed, by ``drop`` absolutely or
    by the fraction ``relative_drop`` of its best (and by at least ``min_drop``, above the noise
    of a small probe):

    .. math::
        a^{pgd}_b - a^{pgd}_t \ge \text{drop} \quad\text{or}\quad
        \big(a^{pgd}_t \le (1 - \text{relative\_drop})\, a^{pgd}_b
        \ \text{and}\ a^{pgd}_b - a^{pgd}_t \ge \text{min\_drop}\big)

    Wong et al. stop when the PGD accuracy of a training batch falls by more than 0.2, which
    suits CIFAR-10 at 8/255 (robust accuracy near 0.45). Where robust accuracy is lower the
    collapse is smaller in absolute terms: plain FGSM training on Fashion-MNIST at eps 0.1
    took PGD accuracy from 0.26 to 0.11 while FGSM accuracy rose from 0.67 to 0.73 (and ended
    above the clean accuracy), which the relative rule catches.

    Args:
        pgd_acc: accuracy under PGD at each check, oldest first.
        fgsm_acc: accuracy under FGSM at the same checks.
        drop: an absolute fall of PGD accuracy from its best that counts as a collapse. Default 0.2.
        relative_drop: a relative fall that counts as a collapse. Default 0.5 (to half the best).
        min_drop: the least absolute fall the relative rule needs. Default 0.05.

    Returns:
        A :class:`CatastrophicOverfitting` (with ``message()`` naming the fix), or ``None``.

    Example:
        >>> detect_catastrophic_overfitting([0.40, 0.45, 0.47], [0.50, 0.55, 0.56]) is None
        True
        >>> found = detect_catastrophic_overfitting([0.40, 0.45, 0.02], [0.50, 0.55, 0.91])
        >>> found.best_index, found.index
        (1, 2)
        >>> # Fashion-MNIST, plain FGSM training at eps 0.1, checked after every epoch:
        >>> detect_catastrophic_overfitting([0.21, 0.26, 0.15, 0.11], [0.49, 0.67, 0.64, 0.73]).best_index
        1

    Reference: Wong, Rice, Kolter, "Fast is Better than Free: Revisiting Adversarial Training",
    ICLR 2020; Andriushchenko, Flammarion, "Understanding and Improving Fast Adversarial
    Training", NeurIPS 2020.
    """
    check_range("drop", drop, 0.0, 1.0, low_open=True)
    check_range("relative_drop", relative_drop, 0.0, 1.0, low_open=True)
    check_range("min_drop", min_drop, 0.0, 1.0)
    if len(pgd_acc) != len(fgsm_acc):
        raise ValueError(f"pgd_acc and fgsm_acc must have one value per check, got {len(pgd_acc)} and {len(fgsm_acc)}")
    if len(pgd_acc) < 2:
        return None
    t = len(pgd_acc) - 1
    b = max(range(t), key=lambda i: (pgd_acc[i], -i))
    fall = pgd_acc[b] - pgd_acc[t]
    collapsed = fall >= drop - 1e-12 or (pgd_acc[t] <= (1 - relative_drop) * pgd_acc[b] and fall >= min_drop - 1e-12)
    if collapsed and fgsm_acc[t] > fgsm_acc[b]:
        return CatastrophicOverfitting(b, t, float(pgd_acc[b]), float(pgd_acc[t]), float(fgsm_acc[b]), float(fgsm_acc[t]))
    return None
