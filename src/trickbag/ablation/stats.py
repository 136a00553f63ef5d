"""Paired statistics across seeds, from scipy: intervals, p-values, Holm's correction, verdicts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trickbag._optional import require

__all__ = ["PairedResult", "paired", "holm", "verdict"]


@dataclass(frozen=True)
class PairedResult:
    """The paired difference ``arm - reference`` over the seeds both have."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    p_value: float


def paired(reference: Mapping[int, float], arm: Mapping[int, float], *, confidence: float = 0.95) -> PairedResult:
    """Paired t-test of ``arm`` against ``reference`` over common seeds (``scipy.stats.ttest_rel``)
    with its confidence interval for the mean difference.

    Example:
        >>> r = paired({0: 0.80, 1: 0.82, 2: 0.81}, {0: 0.83, 1: 0.84, 2: 0.83})
        >>> round(r.mean, 4), r.n, r.ci_low > 0
        (0.0233, 3, True)
    """
    stats = require("scipy.stats", "search", "ablation statistics")
    seeds = sorted(set(reference) & set(arm))
    n = len(seeds)
    diffs = [arm[s] - reference[s] for s in seeds]
    if n == 0:
        return PairedResult(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    mean = sum(diffs) / n
    if n < 2:
        return PairedResult(n, mean, math.nan, math.nan, math.nan, math.nan)
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    if std == 0.0:  # identical differences: the t statistic is undefined
        return PairedResult(n, mean, 0.0, mean, mean, 1.0 if mean == 0 else 0.0)
    res = stats.ttest_rel([arm[s] for s in seeds], [reference[s] for s in seeds])
    ci = res.confidence_interval(confidence_level=confidence)
    return PairedResult(n, mean, std, float(ci.low), float(ci.high), float(res.pvalue))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN stays NaN.

    Example:
        >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03])]
        [0.03, 0.06, 0.06]
    """
    idx = [i for i, p in enumerate(p_values) if p == p]
    m = len(idx)
    order = sorted(idx, key=lambda i: p_values[i])
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def verdict(result: PairedResult, p_adjusted: float, *, maximize: bool, alpha: float = 0.05) -> str:
    """``helps``, ``hurts`` or ``no evidence at N seeds`` (Holm-adjusted p below ``alpha``)."""
    if result.n < 2:
        return f"needs 2+ seeds (has {result.n})"
    if p_adjusted == p_adjusted and p_adjusted < alpha:
        better = result.mean > 0 if maximize else result.mean < 0
        return "helps" if better else "hurts"
    return f"no evidence at {result.n} seeds"
