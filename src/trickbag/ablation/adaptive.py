"""Adaptive seeds (``--seeds auto --budget N``): add paired seeds to the arms whose verdict is
still open, stop the arms that are decided, within a budget of trials.

The decision rule is the anytime-valid sequential t-test of ``trickbag.ablation.stats``
(``sequential``) at level ``alpha / m`` per arm, so looking after every seed and stopping when
an arm is decided keeps the chance of any false "helps" or "hurts" at or below ``alpha``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from trickbag._validate import check_positive_int
from trickbag.ablation.stats import TAU, first_decidable_n, sequential

__all__ = ["first_round_seeds", "min_budget", "next_trials", "undecided"]


def first_round_seeds(arms: int, *, alpha: float = 0.05, tau: float = TAU) -> int:
    """Seeds every arm gets before the first look: the fewest at which the sequential test over
    ``arms - 1`` comparisons can decide at all (earlier looks could never stop anything).

    Example:
        >>> first_round_seeds(6)  # a baseline and five tricks
        5
    """
    check_positive_int("arms", arms, minimum=2)
    return max(2, first_decidable_n(alpha=alpha, m=arms - 1, tau=tau))


def min_budget(arms: int, *, alpha: float = 0.05, tau: float = TAU) -> int:
    """The smallest budget (trials) that reaches the first look: ``arms x first_round_seeds``.

    Example:
        >>> min_budget(6)
        30
    """
    return arms * first_round_seeds(arms, alpha=alpha, tau=tau)


def undecided(values: Sequence[Mapping[int, float]], *, reference: int = 0, alpha: float = 0.05,
              tau: float = TAU) -> list[int]:
    """The arms (indices other than ``reference``) whose confidence sequence, at level
    ``alpha / m`` over the ``m`` comparisons, has not excluded zero yet."""
    m = len(values) - 1
    return [a for a in range(len(values)) if a != reference
            and sequential(values[reference], values[a], alpha=alpha, m=m, tau=tau).decided_at is None]


def next_trials(values: Sequence[Mapping[int, float]], attempted: Sequence[Collection[int]], *, budget: int,
                reference: int = 0, alpha: float = 0.05, tau: float = TAU) -> list[tuple[int, int]]:
    """The ``(arm, seed)`` trials to run next, or ``[]`` when every arm is decided or the budget
    is spent.

    First every arm gets ``first_round_seeds`` seeds; after that each undecided arm gets its next
    seed, and the reference arm every seed an arm needs for its pair. When the budget cannot
    pay for all of them, the arms closest to a decision (largest e-value) go first.

    Args:
        values: per arm, the metric of each completed seed.
        attempted: per arm, every seed already run or queued (failed trials count: they cost).
        budget: the most trials the whole ablation may run.
        reference: the index of the arm every other arm is compared with.

    Example:
        >>> vals = [{}, {}, {}]
        >>> next_trials(vals, [set(), set(), set()], budget=30)[:4]
        [(0, 0), (1, 0), (2, 0), (0, 1)]
    """
    check_positive_int("budget", budget)
    arms = len(values)
    if len(attempted) != arms:
        raise ValueError(f"values and attempted must list the same arms, got {arms} and {len(attempted)}")
    need = min_budget(arms, alpha=alpha, tau=tau)
    if budget < need:
        raise ValueError(f"budget {budget} is too small: the first look needs {need} trials "
                         f"({arms} arms x {need // arms} seeds); give --budget {need} or more")
    start = first_round_seeds(arms, alpha=alpha, tau=tau)
    m = arms - 1
    wanted: dict[int, list[int]] = {}
    evidence: dict[int, float] = {}
    for a in range(arms):
        if a == reference:
            continue
        result = sequential(values[reference], values[a], alpha=alpha, m=m, tau=tau)
        if result.decided_at is not None:
            continue
        seeds = [s for s in range(start) if s not in attempted[a]]
        if not seeds:  # past the first round: the arm's lowest seed not yet tried
            seeds = [min(set(range(len(attempted[a]) + 1)) - set(attempted[a]))]
        wanted[a] = seeds
        evidence[a] = result.e_value
    if not wanted:
        return []
    left = budget - sum(len(s) for s in attempted)
    chosen: list[tuple[int, int]] = []
    ref_new: set[int] = set()
    for a in sorted(wanted, key=lambda a: (-evidence[a], a)):
        extra_ref = {s for s in wanted[a] if s not in attempted[reference] and s not in ref_new}
        cost = len(wanted[a]) + len(extra_ref)
        if cost > left:
            continue
        left -= cost
        ref_new |= extra_ref
        chosen += [(a, s) for s in wanted[a]]
    trials = chosen + [(reference, s) for s in ref_new]
    return sorted(trials, key=lambda t: (t[1], t[0]))
