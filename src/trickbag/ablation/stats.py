"""Paired statistics across seeds: fixed-design t intervals with a Bonferroni adjustment,
anytime-valid confidence sequences for adaptive seeds, power and the seeds an effect needs.

Two designs, one story per row: the verdict of an arm is read off the interval drawn for it.

* **fixed** (``--seeds N``): the paired t interval at level ``1 - alpha / m`` (Bonferroni over
  the ``m`` comparisons, so the ``m`` intervals hold together with probability ``1 - alpha``);
  "helps" or "hurts" exactly when that interval excludes zero, which is the t-test at the
  Bonferroni-adjusted level.
* **sequential** (``--seeds auto``): the scale-invariant normal-mixture sequential t-test
  (Lai 1976) at level ``alpha / m``: a running-intersection confidence sequence that stays valid
  however often it is looked at, so seeds can be added until it excludes zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from trickbag._optional import require

__all__ = [
    "MIN_SEEDS",
    "PairedResult",
    "SequentialResult",
    "anytime_critical_value",
    "arm_verdict",
    "bonferroni",
    "first_decidable_n",
    "holm",
    "interval_verdict",
    "min_detectable_effect",
    "mixture_log_evalue",
    "outlying_seeds",
    "paired",
    "paired_differences",
    "resolution_of",
    "sd_upper_limit",
    "seeds_needed",
    "sequential",
    "sign_flip_p",
    "t_critical_value",
    "t_power",
    "verdict",
]

#: The fewest paired seeds a verdict is read from: with two, the sd of the differences is one
#: number (and of a quantised metric often ~0), so a t interval is no guard against chance.
MIN_SEEDS = 3

#: Default scale ``tau`` of the normal mixture over the standardised effect (effect / sd of the
#: paired differences) in the sequential test: trick effects worth finding are often several
#: seed-noise sds, and ``tau = 2`` lets the test decide from five seeds against five arms.
TAU = 2.0


def _stats():
    return require("scipy.stats", "search", "ablation statistics")


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
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    stats = _stats()
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

    Not the ablation report's rule (``bonferroni``, whose verdicts match the simultaneous intervals
    drawn): Holm is more powerful but has no matching intervals, so a verdict from it must be
    named as Holm's wherever it is shown beside an interval.

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


def bonferroni(p_values: Sequence[float]) -> list[float]:
    """Bonferroni adjusted p-values ``min(1, m p)`` over the ``m`` non-NaN ones; NaN stays NaN.
    ``p_adj < alpha`` exactly when the level ``1 - alpha / m`` interval excludes zero.

    Example:
        >>> [round(p, 3) for p in bonferroni([0.01, 0.04, float("nan")])]
        [0.02, 0.08, nan]
    """
    m = sum(1 for p in p_values if p == p)
    return [min(1.0, m * p) if p == p else math.nan for p in p_values]


def verdict(result: PairedResult, p_adjusted: float, *, maximize: bool, alpha: float = 0.05,
            resolution: float = 0.0) -> str:
    """``helps``, ``hurts`` or ``no evidence at N seeds`` from an adjusted p-value below ``alpha``
    (no verdict below ``MIN_SEEDS`` seeds, none when the differences' sd is below the metric's
    ``resolution``).

    With ``bonferroni`` p-values this is the ablation report's rule (its verdicts, read off the
    simultaneous intervals, are the same); ``holm`` p-values make a different, step-down rule, more
    powerful but with no matching intervals: name the rule beside the verdicts it gave.

    Example:
        >>> r = paired({0: 0.80, 1: 0.82, 2: 0.81}, {0: 0.83, 1: 0.84, 2: 0.835})
        >>> verdict(r, bonferroni([r.p_value, 0.5])[0], maximize=True)
        'helps'
    """
    if result.n < MIN_SEEDS:
        return f"no verdict below {MIN_SEEDS} seeds (has {result.n})"
    flat = _flat(result.n, result.std, result.mean, resolution)
    if flat:
        return flat
    if p_adjusted == p_adjusted and p_adjusted < alpha:
        better = result.mean > 0 if maximize else result.mean < 0
        return "helps" if better else "hurts"
    return f"no evidence at {result.n} seeds"


def interval_verdict(n: int, low: float, high: float, *, maximize: bool, min_n: int = MIN_SEEDS) -> str:
    """The verdict an interval for ``arm - reference`` shows: ``helps`` when it lies wholly on the
    better side of zero, ``hurts`` on the worse side, else ``no evidence at n seeds`` (and no
    verdict below ``min_n`` seeds).

    Example:
        >>> interval_verdict(5, 0.01, 0.03, maximize=True), interval_verdict(5, 0.01, 0.03, maximize=False)
        ('helps', 'hurts')
        >>> interval_verdict(5, -0.01, 0.03, maximize=True)
        'no evidence at 5 seeds'
    """
    if n < min_n:
        return f"no verdict below {min_n} seeds (has {n})"
    if low == low and low > 0:
        return "helps" if maximize else "hurts"
    if high == high and high < 0:
        return "hurts" if maximize else "helps"
    return f"no evidence at {n} seeds"


def _below_resolution(sd: float, resolution: float, scale: float = 1.0, n: int = 1) -> bool:
    """Is this sd of ``n`` paired differences below what the metric can resolve (or float rounding)?
    On a grid of step ``q`` the smallest sd of differences that are not all equal is ``q / sqrt(n)``
    (one of them a step off), so an sd below that means every difference is the same grid value."""
    floor = max(resolution / math.sqrt(max(n, 1)), 1e-9 * max(1.0, abs(scale)))
    return sd == sd and sd < floor


def _flat(n: int, sd: float, mean: float, resolution: float) -> str | None:
    """The verdict of differences whose sd is below the metric's resolution: none (``undecidable``),
    unless they are all ~0 (the arm equals the reference on every seed: no evidence); else None."""
    if not _below_resolution(sd, resolution, mean, n):
        return None
    if abs(mean) <= max(resolution / 2, 1e-12):
        return f"no evidence at {n} seeds"
    return _undecidable(resolution)


def _undecidable(resolution: float) -> str:
    what = f"the metric's resolution {resolution:.3g}" if resolution > 0 else "float rounding"
    return f"undecidable: sd below {what}"


def arm_verdict(n: int, low: float, high: float, *, maximize: bool, sd: float = math.nan, mean: float = 0.0,
                resolution: float = 0.0, failed: int = 0, seeds: int | None = None, min_n: int = MIN_SEEDS) -> str:
    """The ablation report's verdict of one arm: :func:`interval_verdict` of the interval drawn, with
    three guards. No verdict below ``min_n`` paired seeds; ``undecidable`` when the sd of the paired
    differences is below the metric's ``resolution`` (an accuracy over N examples moves in steps of
    1/N: equal differences give an sd of float rounding, and a t interval of zero width; precisely,
    below ``resolution / sqrt(n)``, the least sd of differences on that grid that are not all
    equal, so a real spread of one step still counts); and an
    arm with ``failed`` trials (of ``seeds`` tried), compared on its survivors, is never called
    ``helps`` (divergence is an outcome too).

    Example:
        >>> arm_verdict(2, 0.01, 0.02, maximize=True)
        'no verdict below 3 seeds (has 2)'
        >>> arm_verdict(5, 0.011, 0.013, maximize=True, sd=1e-17, mean=0.012, resolution=1e-3)
        "undecidable: sd below the metric's resolution 0.001"
        >>> arm_verdict(3, 0.01, 0.02, maximize=True, sd=0.004, failed=2, seeds=5)
        'no verdict: 2 of 5 seeds failed'
    """
    if n < min_n:
        return f"no verdict below {min_n} seeds (has {n})"
    flat = _flat(n, sd, mean, resolution)
    if flat:
        return flat
    said = interval_verdict(n, low, high, maximize=maximize, min_n=min_n)
    if said == "helps" and failed:
        return f"no verdict: {failed} of {seeds if seeds is not None else n + failed} seeds failed"
    return said


def paired_differences(reference: Mapping[int, float], arm: Mapping[int, float]) -> dict[int, float]:
    """``arm - reference`` per seed, over the seeds both have, in seed order.

    Example:
        >>> paired_differences({0: 0.5, 1: 0.6}, {1: 0.7, 2: 0.1})
        {1: 0.09999999999999998}
    """
    return {s: arm[s] - reference[s] for s in sorted(set(reference) & set(arm))}


def sign_flip_p(diffs: Sequence[float], *, exact_up_to: int = 16, draws: int = 2**16, seed: int = 0) -> float:
    """The two-sided sign-flip (permutation) p-value of "the paired differences are symmetric about 0":
    the share of the ``2^n`` sign patterns whose ``|sum|`` is at least the observed one. Exact up to
    ``exact_up_to`` differences (a seeded Monte Carlo estimate, ``(1 + hits) / (1 + draws)``, above).
    It needs no normality, and it can never go below ``2^(1 - n)``: two seeds can never give it
    below 0.5, five never below 1/16.

    Example:
        >>> sign_flip_p([0.01, 0.02, 0.015]), sign_flip_p([0.01, -0.02, 0.015])
        (0.25, 1.0)

    Reference: Fisher, The Design of Experiments, 1935, sec. 21; Good, Permutation Tests, 2000.
    """
    x = np.asarray(list(diffs), dtype=float)
    n = len(x)
    if n == 0 or not np.isfinite(x).all():
        return math.nan
    observed = abs(float(x.sum()))
    tol = 1e-12 * float(np.abs(x).sum())
    if n <= exact_up_to:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        return float(np.mean(np.abs(signs @ x) >= observed - tol))
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(draws, n))
    return float((1 + np.sum(np.abs(signs @ x) >= observed - tol)) / (1 + draws))


def sd_upper_limit(sd: float, n: int, *, confidence: float = 0.8) -> float:
    """The upper ``confidence`` limit of the true sd from the sample sd of ``n`` normal values:
    ``sd sqrt((n - 1) / chi2_{1 - confidence, n - 1})`` (the chi-square interval). Power computed at
    the observed sd is optimistic (a small sample's sd is often too small, and power falls fast
    with the sd); the true sd is below this limit with probability ``confidence``.

    Example:
        >>> round(sd_upper_limit(1.0, 5), 3)
        1.558
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if n < 2 or not sd == sd:
        return math.nan
    return float(sd * math.sqrt((n - 1) / _stats().chi2.ppf(1 - confidence, n - 1)))


def resolution_of(values: Sequence[float], *, max_denominator: int = 100_000) -> float:
    """The step a metric moves in, detected from its values: ``1/N`` when every value is a multiple
    of one ``1/N`` with ``N <= max_denominator`` (an accuracy over ``N`` examples), else 0.

    Example:
        >>> resolution_of([0.618, 0.6228333333333333, 0.5]) == 1 / 6000
        True
        >>> resolution_of([0.5372613, 0.5172839])
        0.0
    """
    from fractions import Fraction

    den = 1
    finite = [float(v) for v in values if v == v and math.isfinite(v)]
    if len(finite) < 2:
        return 0.0
    for v in finite:
        f = Fraction(v).limit_denominator(max_denominator)
        if abs(float(f) - v) > 1e-12 * max(1.0, abs(v)):
            return 0.0
        den = den * f.denominator // math.gcd(den, f.denominator)
        if den > max_denominator:
            return 0.0
    return 1.0 / den if den > 1 else 0.0


def outlying_seeds(diffs: Mapping[int, float], *, alpha: float = 0.05, resolution: float = 0.0) -> list[int]:
    """The seed whose paired difference is an outlier by Grubbs' test at level ``alpha`` (a collapse or
    a divergence of one arm on one seed, which a t interval averages in as if the differences were
    normal), or ``[]``. ``G = max |d - mean| / sd`` against
    ``(n - 1) / sqrt(n) * sqrt(t^2 / (n - 2 + t^2))``, ``t = t_{alpha / (2 n), n - 2}``; about one
    row in ``1 / alpha`` of normal differences is flagged by chance. Needs three differences or more.

    Example:
        >>> outlying_seeds({0: 0.01, 1: 0.012, 2: 0.011, 3: 0.009, 4: -0.2})
        [4]

    Reference: Grubbs, Procedures for Detecting Outlying Observations in Samples, Technometrics 11(1), 1969.
    """
    n = len(diffs)
    if n < 3:
        return []
    x = np.array(list(diffs.values()), dtype=float)
    sd = float(x.std(ddof=1))
    if not np.isfinite(x).all() or _below_resolution(sd, resolution, float(np.abs(x).max()), n):
        return []
    dev = np.abs(x - x.mean()) / sd
    t = float(_stats().t.ppf(1 - alpha / (2 * n), n - 2))
    critical = (n - 1) / math.sqrt(n) * math.sqrt(t * t / (n - 2 + t * t))
    worst = int(np.argmax(dev))
    return [list(diffs)[worst]] if dev[worst] > critical else []


# ---- power of the paired t-test ---------------------------------------------------------------

def t_critical_value(n: int | np.ndarray, *, alpha: float = 0.05, m: int = 1) -> float | np.ndarray:
    """The two-sided critical |t| of the paired t-test with ``n`` seeds at level ``alpha / m``:
    ``t_{1 - alpha / (2 m), n - 1}`` (``inf`` below two seeds).

    Example:
        >>> round(float(t_critical_value(10)), 3)
        2.262
    """
    _check_level(alpha, m)
    n = np.asarray(n, dtype=float)
    out = np.full(n.shape, np.inf)
    ok = n >= 2
    out[ok] = _stats().t.ppf(1 - alpha / (2 * m), n[ok] - 1)
    return out if out.ndim else float(out)


def t_power(effect: float | np.ndarray, n: int | np.ndarray, critical: float | np.ndarray) -> float | np.ndarray:
    """Power of the two-sided test ``|t| >= critical`` with ``n`` paired seeds when the true
    standardised effect (mean difference / sd of the differences) is ``effect``.

    ``t`` follows a noncentral t distribution with ``n - 1`` degrees of freedom and noncentrality
    ``effect * sqrt(n)``: power = ``P(T >= c) + P(T <= -c)`` (``scipy.stats.nct``).

    Example:
        >>> round(float(t_power(1.0, 10, t_critical_value(10))), 3)  # one sd, ten seeds, alpha 0.05
        0.803
    """
    nct = _stats().nct
    effect, n, c = np.broadcast_arrays(np.asarray(effect, float), np.asarray(n, float), np.asarray(critical, float))
    out = np.zeros(effect.shape)
    ok = (n >= 2) & np.isfinite(c)
    if ok.any():
        df, nc, cc = n[ok] - 1, np.abs(effect[ok]) * np.sqrt(n[ok]), c[ok]
        with np.errstate(all="ignore"):
            p = nct.sf(cc, df, nc) + nct.cdf(-cc, df, nc)
        for i in np.nonzero(~np.isfinite(p))[0]:  # scipy's nct fails far in the tails at small df
            p[i] = _two_sided_power(float(cc[i]), float(df[i]), float(nc[i]))
        out[ok] = p
    return out if out.ndim else float(out)


def _two_sided_power(c: float, df: float, nc: float) -> float:
    """``P(|Z + nc| >= c sqrt(V / df))`` with ``Z ~ N(0, 1)``, ``V ~ chi2(df)``, by quadrature over ``V``."""
    stats = _stats()
    integrate = require("scipy.integrate", "search", "ablation statistics")

    def f(v: float) -> float:
        r = c * math.sqrt(v / df)
        return (stats.norm.sf(r - nc) + stats.norm.cdf(-r - nc)) * stats.chi2.pdf(v, df)

    return float(min(1.0, max(0.0, integrate.quad(f, 0, np.inf, limit=200)[0])))


def _critical(n, *, alpha: float, m: int, design: str, tau: float):
    if design == "fixed":
        return t_critical_value(n, alpha=alpha, m=m)
    if design == "sequential":
        return anytime_critical_value(n, alpha=alpha, m=m, tau=tau)
    raise ValueError(f"design must be 'fixed' or 'sequential', got {design!r}")


def min_detectable_effect(n: int, sd: float, *, alpha: float = 0.05, m: int = 1, power: float = 0.8,
                          design: str = "fixed", tau: float = TAU) -> float:
    """The smallest true effect (in the metric's units) that ``n`` paired seeds detect with
    probability ``power`` when the differences have standard deviation ``sd``.

    Solves ``t_power(d, n, c_n) = power`` for the standardised effect ``d`` (``scipy.optimize.brentq``)
    and returns ``d * sd``; ``c_n`` is the fixed design's ``t`` quantile or, for the sequential
    design, its anytime critical value at ``n`` (a conservative figure for that design: it ignores
    the chance of deciding at an earlier look). ``inf`` when ``n`` seeds cannot decide at all.

    Example:
        >>> round(min_detectable_effect(10, 0.01), 4)  # 80% power at alpha 0.05: about one sd
        0.01
    """
    _check_power(power)
    if n < 2 or not sd == sd:
        return math.nan
    c = float(_critical(n, alpha=alpha, m=m, design=design, tau=tau))
    if not math.isfinite(c):
        return math.inf
    if sd == 0:
        return 0.0
    optimize = require("scipy.optimize", "search", "ablation statistics")
    hi = 1.0
    while t_power(hi, n, c) < power:
        hi *= 2
    d = optimize.brentq(lambda e: t_power(e, n, c) - power, 0.0, hi, xtol=1e-10)
    return float(d * sd)


def seeds_needed(effect: float, sd: float, *, alpha: float = 0.05, m: int = 1, power: float = 0.8,
                 design: str = "fixed", tau: float = TAU, max_seeds: int = 10_000) -> int | None:
    """The fewest paired seeds that detect a true effect ``effect`` (metric units) with probability
    ``power`` when the differences have standard deviation ``sd``; ``None`` when more than
    ``max_seeds`` would be needed (or the effect is zero).

    The smallest ``n`` with ``t_power(|effect| / sd, n, c_n) >= power``: every ``n`` up to 64 is
    tried, then (power only grows with ``n`` there) doubling and bisection up to ``max_seeds``.

    Example:
        >>> seeds_needed(0.01, 0.01)  # a one-sd effect: ten seeds at 80% power, alpha 0.05
        10
    """
    _check_power(power)
    if not (effect == effect and sd == sd) or effect == 0:
        return None
    if sd == 0:
        return 2
    d = abs(effect) / sd

    def enough(k):
        return t_power(d, k, _critical(k, alpha=alpha, m=m, design=design, tau=tau)) >= power

    small = np.arange(2, min(64, max_seeds) + 1)
    ok = np.nonzero(enough(small))[0]
    if ok.size:
        return int(small[ok[0]])
    low, high = int(small[-1]), int(small[-1])
    while high < max_seeds and not enough(high):
        low, high = high, min(2 * high, max_seeds)
    if not enough(high):
        return None
    while high - low > 1:  # enough(high), not enough(low)
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


# ---- the sequential design ---------------------------------------------------------------------

def mixture_log_evalue(diffs: np.ndarray | Sequence[float], *, tau: float = TAU) -> np.ndarray:
    """log ``M_n`` for ``n = 1 .. N`` along the last axis: the e-process of the scale-invariant
    normal-mixture sequential t-test of "mean difference = 0" with unknown variance.

    With ``S_n = sum x_i`` and ``Q_n = sum x_i^2`` of the first ``n`` paired differences,

        M_n = (1 + n tau^2)^(-1/2) * (1 - n tau^2 R_n / (1 + n tau^2))^(-n/2),   R_n = S_n^2 / (n Q_n),

    the likelihood ratio of the scale-invariant part of the data (Wijsman's representation)
    between a normal mixture ``N(0, tau^2)`` over the standardised effect and no effect. Under the
    null it is a nonnegative martingale with ``M_1 = 1``, whatever the variance, so by Ville's
    inequality ``P(M_n >= 1 / alpha for some n) <= alpha``: the test may be run after every seed.
    ``R_n = t_n^2 / (n - 1 + t_n^2)`` with ``t_n`` the one-sample t statistic.

    Example:
        >>> import numpy as np
        >>> np.round(np.exp(mixture_log_evalue([1.0, 1.2, 0.9, 1.1, 1.0])), 1).tolist()
        [1.0, 2.8, 10.2, 50.4, 285.2]

    Reference:
        Lai. On Confidence Sequences. Annals of Statistics 4(2), 1976. Perez-Ortiz, Lardy, de Heide,
        Grunwald. E-Statistics, Group Invariance and Anytime-Valid Testing. Annals of Statistics, 2024.
    """
    check_tau(tau)
    x = np.asarray(diffs, dtype=float)
    n = np.arange(1, x.shape[-1] + 1)
    s = np.cumsum(x, axis=-1)
    q = np.cumsum(x * x, axis=-1)
    a = n * tau * tau
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(q > 0, s * s / (n * q), 0.0)
    r = np.minimum(r, 1.0)
    out = -0.5 * np.log1p(a) - 0.5 * n * np.log1p(-a * r / (1 + a))
    return np.where(q > 0, out, 0.0)


def anytime_critical_value(n: int | np.ndarray, *, alpha: float = 0.05, m: int = 1,
                           tau: float = TAU) -> float | np.ndarray:
    """``c_n``: the sequential test at level ``alpha / m`` rejects at ``n`` seeds exactly when the
    one-sample ``|t_n| >= c_n``, and its confidence sequence at ``n`` is ``mean +- c_n sd / sqrt(n)``
    (``inf`` while ``n`` seeds cannot reject at all).

    From ``M_n >= m / alpha``: with ``a = 1 + n tau^2`` and ``K = (sqrt(a) m / alpha)^(2/n)``,
    ``r* = (1 - 1/K) a / (a - 1)`` and ``c_n = sqrt((n - 1) r* / (1 - r*))`` when ``r* < 1``.

    Example:
        >>> [round(float(c), 2) for c in anytime_critical_value([3, 5, 10, 100], alpha=0.05, tau=2.0)]
        [inf, 5.36, 3.97, 3.56]
    """
    _check_level(alpha, m)
    check_tau(tau)
    n = np.asarray(n, dtype=float)
    out = np.full(n.shape, np.inf)
    ok = n >= 2
    a = 1 + n[ok] * tau * tau
    log_k = (2 / n[ok]) * (0.5 * np.log(a) + math.log(m / alpha))
    r = -np.expm1(-log_k) * a / (a - 1)
    fin = r < 1
    vals = np.full(r.shape, np.inf)
    vals[fin] = np.sqrt((n[ok][fin] - 1) * r[fin] / (1 - r[fin]))
    out[ok] = vals
    return out if out.ndim else float(out)


def first_decidable_n(*, alpha: float = 0.05, m: int = 1, tau: float = TAU, limit: int = 1000) -> int:
    """The fewest seeds at which the sequential test at level ``alpha / m`` can reject at all.

    Example:
        >>> first_decidable_n(alpha=0.05, m=5, tau=2.0)
        5
    """
    n = np.arange(2, limit + 1)
    ok = np.nonzero(np.isfinite(anytime_critical_value(n, alpha=alpha, m=m, tau=tau)))[0]
    if not ok.size:
        raise ValueError(f"no number of seeds up to {limit} can decide at alpha {alpha} over {m} arms with tau {tau}")
    return int(n[ok[0]])


@dataclass(frozen=True)
class SequentialResult:
    """The anytime-valid analysis of ``arm - reference`` over the seeds both have, in seed order."""

    n: int
    mean: float
    std: float
    ci_low: float  # the running intersection of the confidence sequence at level alpha / m
    ci_high: float
    e_value: float  # the largest M_k over k <= n
    p_value: float  # anytime-valid p-value min(1, 1 / e_value) (not adjusted for m)
    decided_at: int | None  # the first n at which the confidence sequence excluded zero


def sequential(reference: Mapping[int, float], arm: Mapping[int, float], *, alpha: float = 0.05, m: int = 1,
               tau: float = TAU) -> SequentialResult:
    """The sequential test of ``arm - reference`` over their common seeds, taken in seed order as
    if it had been looked at after every seed: the running intersection of Lai's confidence
    sequence ``mean_k +- c_k sd_k / sqrt(k)`` over ``k <= n`` (valid at every ``n`` at once), and
    whether and when it first excluded zero. The interval excludes zero exactly when
    ``m * p_value < alpha``.

    Example:
        >>> ref = {s: 0.80 + 0.01 * (s % 3) for s in range(8)}
        >>> r = sequential(ref, {s: v + 0.05 + 0.002 * (s % 2) for s, v in ref.items()}, alpha=0.05, m=1)
        >>> r.decided_at, r.ci_low > 0
        (4, True)
    """
    seeds = sorted(set(reference) & set(arm))
    x = np.array([arm[s] - reference[s] for s in seeds], dtype=float)
    n = len(x)
    if n < 2:
        mean = float(x.mean()) if n else math.nan
        return SequentialResult(n, mean, math.nan, -math.inf, math.inf, 1.0, 1.0, None)
    k = np.arange(1, n + 1)
    means = np.cumsum(x) / k
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (np.cumsum(x * x) - k * means * means) / np.maximum(k - 1, 1)
    sds = np.sqrt(np.maximum(var, 0.0))
    c = anytime_critical_value(k, alpha=alpha, m=m, tau=tau)
    with np.errstate(invalid="ignore"):
        half = np.where(np.isfinite(c), c * sds / np.sqrt(k), np.inf)
    lows, highs = means - half, means + half
    lows[0], highs[0] = -np.inf, np.inf
    low, high = float(np.max(lows)), float(np.min(highs))
    excluded = (lows > 0) | (highs < 0)
    decided = int(k[np.argmax(excluded)]) if excluded.any() else None
    if low > high:  # the sequence contradicted itself (probability <= alpha / m): keep the latest
        low, high = float(lows[-1]), float(highs[-1])
    e = float(np.exp(np.max(mixture_log_evalue(x, tau=tau))))
    return SequentialResult(n, float(means[-1]), float(sds[-1]), low, high, e, min(1.0, 1.0 / e), decided)


def check_tau(tau: float) -> float:
    if not (isinstance(tau, (int, float)) and not isinstance(tau, bool) and tau > 0 and math.isfinite(tau)):
        raise ValueError(f"tau (the mixture's scale over standardised effects) must be a positive number, got {tau!r}")
    return float(tau)


def _check_level(alpha: float, m: int) -> None:
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m (the number of comparisons) must be an integer >= 1, got {m!r}")


def _check_power(power: float) -> None:
    if not (isinstance(power, (int, float)) and 0 < power < 1):
        raise ValueError(f"power must be in (0, 1), got {power!r}")
