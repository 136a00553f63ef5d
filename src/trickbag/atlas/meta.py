"""Pooling a trick's effect across tasks: a random-effects meta-analysis of per-task paired effects.

Each task ``i`` gives an effect ``y_i`` (the trick's paired improvement over that task's baseline,
on a common scale) with a within-task variance ``v_i`` (from its seeds). The random-effects model

    y_i = mu + u_i + e_i,    u_i ~ N(0, tau^2),    e_i ~ N(0, v_i)

says the trick's true effect varies from task to task around ``mu`` with sd ``tau``. Estimated:

* ``tau^2`` by restricted maximum likelihood (REML, the default), DerSimonian-Laird (``"dl"``) or
  Paule-Mandel (``"pm"``), truncated at 0;
* ``mu = sum w_i y_i / sum w_i`` with ``w_i = 1 / (v_i + tau^2)``;
* its interval by Hartung-Knapp-Sidik-Jonkman (HKSJ): ``mu +- t_{k-1} sqrt(q / sum w)`` with
  ``q = sum w_i (y_i - mu)^2 / (k - 1)``, the interval that keeps its coverage with few tasks.
  ``hksj="modified"`` (the default) uses ``max(1, q)`` (Knapp and Hartung 2003; Roever, Knapp and
  Friede 2015), so the interval is never narrower than the plain random-effects one: with a handful
  of tasks whose effects happen to agree, ``q`` near 0 would otherwise claim a precision the tasks'
  own seeds do not have. ``"standard"`` is the textbook HKSJ (statsmodels' ``var_hksj_re``);
* the **prediction interval** for the effect on a new task (Higgins, Thompson and Spiegelhalter
  2009): ``mu +- t_{k-2} sqrt(tau^2 + SE^2)``, with ``SE`` the HKSJ standard error of ``mu`` (as
  Partlett and Riley 2017 advise, so it always contains the confidence interval); it needs
  ``k >= 3`` tasks;
* heterogeneity: Cochran's ``Q = sum v_i^-1 (y_i - mu_FE)^2`` and ``I^2 = max(0, (Q - (k-1)) / Q)``
  (Higgins and Thompson 2002), the share of the effects' spread that is not seed noise.

Common scales (:func:`cell_effect`): effects on tasks with different metrics are pooled only on
one of these, never in raw units, and every effect is oriented so that positive means better.

* ``"raw"``: the paired improvement in the metric's own units (one metric across all tasks only);
* ``"rer"``, relative error reduction: for a metric to maximise with a ceiling ``top`` (1 for a
  fraction such as accuracy, 100 for a percentage) ``(mean(treated) - mean(baseline)) / (top -
  mean(baseline))``, the share of the baseline's error the trick removes; for a metric to minimise
  (an error rate, a loss) ``(mean(baseline) - mean(treated)) / mean(baseline)``. Its within-task
  variance by the delta method from the paired differences' and baseline's (co)variances;
* ``"standardised"``: the improvement divided by the baseline's seed sd (a Cohen's d-like number:
  the effect in units of seed noise), variance ``var(mean d) / sd^2 + d^2 / (2 (n_sd - 1))``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from trickbag._optional import require

__all__ = [
    "HKSJ",
    "METHODS",
    "SCALES",
    "MetaResult",
    "cell_effect",
    "check_options",
    "normalise_scale",
    "random_effects",
    "scale_description",
    "scale_factor",
    "tau2_dl",
    "tau2_pm",
    "tau2_reml",
]

METHODS = ("reml", "dl", "pm")
HKSJ = ("modified", "standard")
SCALES = ("raw", "rer", "standardised")
_SCALE_ALIASES = {"standardized": "standardised", "relative_error_reduction": "rer", "relative": "rer"}


def _t():
    return require("scipy.stats", "search", "atlas statistics").t


# ---- tau^2 estimators ------------------------------------------------------------------------------

def _check(y: Sequence[float], v: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y, v = np.asarray(y, dtype=float), np.asarray(v, dtype=float)
    if y.ndim != 1 or y.shape != v.shape:
        raise ValueError(f"effects and variances must be two lists of one length, got shapes {y.shape} and {v.shape}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(v))):
        raise ValueError(f"effects and variances must be finite numbers, got {y.tolist()} and {v.tolist()}")
    if np.any(v < 0):
        raise ValueError(f"variances must be >= 0, got {v.tolist()}")
    return y, v


def tau2_dl(effects: Sequence[float], variances: Sequence[float]) -> float:
    """DerSimonian-Laird moment estimate of the between-task variance, truncated at 0:
    ``(Q - (k - 1)) / (sum w - sum w^2 / sum w)`` with ``w = 1 / v``.

    Example:
        >>> round(tau2_dl([0.1, 0.3, 0.5], [0.01, 0.01, 0.01]), 6)
        0.03
    """
    y, v = _check(effects, variances)
    if len(y) < 2:
        return 0.0
    w = 1.0 / v
    mu = w @ y / w.sum()
    q = w @ (y - mu) ** 2
    c = w.sum() - (w @ w) / w.sum()
    return float(max(0.0, (q - (len(y) - 1)) / c))


def _reml_score(tau2: float, y: np.ndarray, v: np.ndarray) -> float:
    """d/dtau^2 of the restricted log-likelihood (times 2):
    ``sum w^2 (y - mu)^2 - sum w + sum w^2 / sum w``."""
    w = 1.0 / (v + tau2)
    mu = w @ y / w.sum()
    return float((w * w) @ (y - mu) ** 2 - w.sum() + (w @ w) / w.sum())


def tau2_reml(effects: Sequence[float], variances: Sequence[float]) -> float:
    """Restricted maximum-likelihood estimate of the between-task variance: the root of the REML
    score (Brent's method to machine precision), or 0 when the score is not positive there.

    The restricted log-likelihood is
    ``-1/2 [sum log(v_i + tau^2) + log sum w_i + sum w_i (y_i - mu)^2]``, ``w_i = 1/(v_i + tau^2)``.

    Example:
        >>> round(tau2_reml([0.1, 0.3, 0.5], [0.01, 0.01, 0.01]), 6)  # equal variances: the DL value
        0.03
    """
    y, v = _check(effects, variances)
    if len(y) < 2 or _reml_score(0.0, y, v) <= 0:
        return 0.0
    optimize = require("scipy.optimize", "search", "atlas statistics")
    hi = max(float(np.var(y)) * len(y), float(v.max()), 1e-300)
    while _reml_score(hi, y, v) > 0:
        hi *= 2
    return float(optimize.brentq(_reml_score, 0.0, hi, args=(y, v), xtol=1e-15 * hi, rtol=4 * np.finfo(float).eps,
                                 maxiter=500))


def tau2_pm(effects: Sequence[float], variances: Sequence[float]) -> float:
    """Paule-Mandel estimate: the ``tau^2`` at which the generalised ``Q`` with weights
    ``1 / (v + tau^2)`` equals its expectation ``k - 1`` (0 when ``Q`` at 0 is below it); the
    estimator statsmodels' ``combine_effects(method_re="iterated")`` computes.

    Example:
        >>> round(tau2_pm([0.1, 0.3, 0.5], [0.01, 0.01, 0.01]), 6)
        0.03
    """
    y, v = _check(effects, variances)
    k = len(y)

    def excess(tau2: float) -> float:
        w = 1.0 / (v + tau2)
        mu = w @ y / w.sum()
        return float(w @ (y - mu) ** 2 - (k - 1))

    if k < 2 or excess(0.0) <= 0:
        return 0.0
    optimize = require("scipy.optimize", "search", "atlas statistics")
    hi = max(float(np.var(y)) * k, float(v.max()), 1e-300)
    while excess(hi) > 0:
        hi *= 2
    return float(optimize.brentq(excess, 0.0, hi, xtol=1e-15 * hi, rtol=4 * np.finfo(float).eps, maxiter=500))


_ESTIMATORS = {"reml": tau2_reml, "dl": tau2_dl, "pm": tau2_pm}


# ---- the pooled effect ------------------------------------------------------------------------------

def check_options(*, method: str, hksj: str, confidence: float) -> None:
    """Raise ``ValueError`` naming a bad ``method``, ``hksj`` or ``confidence`` and what is valid."""
    if method not in _ESTIMATORS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if hksj not in HKSJ:
        raise ValueError(f"hksj must be one of {HKSJ}, got {hksj!r}")
    if not (isinstance(confidence, float) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")


@dataclass(frozen=True)
class MetaResult:
    """A trick's effect pooled over ``k`` tasks (``nan`` where a quantity is not available)."""

    k: int
    estimate: float  # mu, the pooled effect
    se: float  # its HKSJ standard error (the one the interval uses)
    ci_low: float  # HKSJ confidence interval for mu
    ci_high: float
    pi_low: float  # prediction interval for the effect on a new task (k >= 3)
    pi_high: float
    tau2: float
    tau: float
    i2: float  # Higgins-Thompson I^2 in [0, 1]
    q: float  # Cochran's Q (fixed-effect weights)
    p_value: float  # HKSJ t-test of mu = 0 (k - 1 df)
    method: str
    hksj: str
    confidence: float
    helps: int = 0  # tasks whose own (per-task) verdict was helps / hurts / neither
    hurts: int = 0
    undecided: int = 0
    zero_variance: int = 0  # tasks whose within-task variance was 0 (all seeds gave one difference)
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def random_effects(effects: Sequence[float], variances: Sequence[float], *, method: str = "reml",
                   hksj: str = "modified", confidence: float = 0.95,
                   verdicts: Sequence[str] | None = None) -> MetaResult:
    """Random-effects meta-analysis of per-task effects ``y_i`` with within-task variances ``v_i``.

    ``tau^2`` by ``method`` (``"reml"``, ``"dl"`` DerSimonian-Laird, ``"pm"`` Paule-Mandel);
    ``mu = sum w y / sum w`` with ``w = 1 / (v + tau^2)``; the HKSJ interval
    ``mu +- t_{k-1, (1+c)/2} sqrt(q* / sum w)`` with ``q* = max(1, q)`` (``hksj="modified"``) or
    ``q`` (``"standard"``), ``q = sum w (y - mu)^2 / (k - 1)``; the prediction interval
    ``mu +- t_{k-2, (1+c)/2} sqrt(tau^2 + SE^2)``. One task: nothing to pool (its effect, no
    interval). Zero variances (every seed gave the same difference) are kept, as 1e-12 of the
    effects' scale, so such a task weighs most without dividing by zero.

    Args:
        effects: one effect per task, on one scale.
        variances: their within-task variances (squared standard errors), >= 0.
        method: the ``tau^2`` estimator (default ``"reml"``).
        hksj: ``"modified"`` (default) or ``"standard"``.
        confidence: level of both intervals (default 0.95).
        verdicts: optional per-task verdicts (``"helps"``, ``"hurts"``, anything else is undecided),
            counted into the result.

    Returns:
        A :class:`MetaResult`.

    Example:
        >>> r = random_effects([0.10, 0.12, 0.08, 0.11], [1e-4, 1e-4, 1e-4, 1e-4])
        >>> round(r.estimate, 4), r.ci_low < r.estimate < r.ci_high, r.pi_low <= r.ci_low
        (0.1025, True, True)

    References:
        DerSimonian, Laird. Meta-analysis in clinical trials. Controlled Clinical Trials 7, 1986.
        Hartung, Knapp. On tests of the overall treatment effect in meta-analysis with normally
        distributed responses. Statistics in Medicine 20, 2001. Sidik, Jonkman. A simple confidence
        interval for meta-analysis. Statistics in Medicine 21, 2002. Higgins, Thompson, Spiegelhalter.
        A re-evaluation of random-effects meta-analysis. JRSS-A 172, 2009. Viechtbauer. Bias and
        efficiency of meta-analytic variance estimators in the random-effects model. JEBS 30, 2005.
    """
    check_options(method=method, hksj=hksj, confidence=confidence)
    y, v = _check(effects, variances)
    k = len(y)
    if verdicts is not None and len(verdicts) != k:
        raise ValueError(f"verdicts must give one verdict per effect ({k}), got {len(verdicts)}")
    counts = _count(verdicts or [])
    nan = math.nan
    common = dict(method=method, hksj=hksj, confidence=confidence, zero_variance=int(np.sum(v == 0)), **counts)
    if k == 0:
        return MetaResult(0, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, note="no tasks", **common)
    if k == 1:
        return MetaResult(1, float(y[0]), math.sqrt(v[0]), nan, nan, nan, nan, nan, nan, nan, nan, nan,
                          note="one task: nothing to pool", **common)
    # All estimators are equivariant under y -> y / c, v -> v / c^2: work on a unit scale, so that a
    # floor for zero variances is relative and weights never overflow.
    c = max(float(np.max(np.abs(y - np.median(y)))), float(np.sqrt(v.max())), float(np.max(np.abs(y))) * 1e-6)
    if c == 0:  # every effect exactly 0 with zero variance
        return MetaResult(k, 0.0, 0.0, 0.0, 0.0, 0.0 if k >= 3 else nan, 0.0 if k >= 3 else nan, 0.0, 0.0, 0.0,
                          0.0, 1.0, note="every effect 0 with no seed variance", **common)
    ys, vs = y / c, np.maximum(v / (c * c), 1e-12)
    tau2 = _ESTIMATORS[method](ys, vs)
    w = 1.0 / (vs + tau2)
    mu = float(w @ ys / w.sum())
    q_scale = float(w @ (ys - mu) ** 2 / (k - 1))
    var_mu = (max(1.0, q_scale) if hksj == "modified" else q_scale) / w.sum()
    se = math.sqrt(var_mu)
    t = _t()
    level = (1 + confidence) / 2
    half = float(t.ppf(level, k - 1)) * se
    p = float(2 * t.sf(abs(mu) / se, k - 1)) if se > 0 else (1.0 if mu == 0 else 0.0)
    wf = 1.0 / vs
    mu_fe = wf @ ys / wf.sum()
    q = float(wf @ (ys - mu_fe) ** 2)
    i2 = max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
    if k >= 3:
        pi_half = float(t.ppf(level, k - 2)) * math.sqrt(tau2 + var_mu)
        pi = ((mu - pi_half) * c, (mu + pi_half) * c)
        note = ""
    else:
        pi = (nan, nan)
        note = "two tasks: no prediction interval (it needs 3+)"
    return MetaResult(k, mu * c, se * c, (mu - half) * c, (mu + half) * c, pi[0], pi[1], tau2 * c * c,
                      math.sqrt(tau2) * c, i2, q, p, note=note, **common)


def _count(verdicts: Sequence[str]) -> dict[str, int]:
    helps = sum(1 for x in verdicts if x == "helps")
    hurts = sum(1 for x in verdicts if x == "hurts")
    return {"helps": helps, "hurts": hurts, "undecided": len(verdicts) - helps - hurts}


# ---- per-task effects on a common scale -------------------------------------------------------------

def normalise_scale(scale: str) -> str:
    s = _SCALE_ALIASES.get(str(scale).lower(), str(scale).lower())
    if s not in SCALES:
        raise ValueError(f"scale must be one of {SCALES} (or 'standardized'), got {scale!r}")
    return s


def scale_description(scale: str, *, metrics: Sequence[str] = ()) -> str:
    """One sentence that states the common scale (for reports)."""
    scale = normalise_scale(scale)
    if scale == "raw":
        units = ", ".join(sorted(set(metrics))) or "one metric"
        return f"the paired improvement in the metric's own units ({units}), positive = better"
    if scale == "rer":
        return ("relative error reduction: the share of the baseline's error the trick removes, "
                "(treated - baseline) / (ceiling - baseline) for a metric to maximise (ceiling 1 for a fraction, "
                "100 for a percentage), (baseline - treated) / baseline for one to minimise; positive = better, "
                "0.1 = a tenth of the error gone; within-task variance by the delta method")
    return ("standardised effect: the paired improvement divided by the baseline's seed-to-seed sd (the effect in "
            "units of seed noise), positive = better")


def scale_factor(baseline: Mapping[int, float], treated: Mapping[int, float], *, direction: str, scale: str,
                 top: float = 1.0, baseline_sd: float | None = None) -> float:
    """The factor ``f`` that takes a paired difference ``treated - baseline`` in the metric's units
    to the common scale, as :func:`cell_effect` does for the mean (``effect = f * mean difference``):
    ``+-1`` (raw), ``+-1 / error`` (rer), ``+-1 / sd`` (standardised); ``nan`` where undefined. An
    interval for the mean difference times ``f`` is the same interval on the common scale (it
    excludes zero exactly when the original does).

    Example:
        >>> round(scale_factor({0: 0.8, 1: 0.9}, {0: 0.9, 1: 0.9}, direction="maximize", scale="rer"), 4)
        6.6667
    """
    scale = normalise_scale(scale)
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    sign = 1.0 if direction == "maximize" else -1.0
    if scale == "raw":
        return sign
    if scale == "rer":
        seeds = sorted(set(baseline) & set(treated))
        if not seeds:
            return math.nan
        mean_b = statistics.fmean(baseline[s] for s in seeds)
        err = top - mean_b if direction == "maximize" else mean_b
        return sign / err if err > 0 else math.nan
    all_b = [float(x) for x in baseline.values()]
    sd = float(baseline_sd) if baseline_sd is not None else (statistics.stdev(all_b) if len(all_b) > 1 else math.nan)
    return sign / sd if sd == sd and sd > 0 else math.nan


def cell_effect(baseline: Mapping[int, float], treated: Mapping[int, float], *, direction: str, scale: str,
                top: float = 1.0, baseline_sd: float | None = None) -> tuple[float, float, int]:
    """One task's effect of one trick on a common scale, oriented so positive means better, with
    its within-task variance and the number of paired seeds: ``(effect, variance, n)``.

    Paired over the seeds both have. ``variance`` is ``nan`` below two seeds; ``effect`` is ``nan``
    where the scale is undefined (no error left to reduce, a baseline sd of 0).

    Args:
        baseline, treated: metric per seed.
        direction: ``"maximize"`` or ``"minimize"``.
        scale: ``"raw"``, ``"rer"`` or ``"standardised"`` (see the module docstring).
        top: the metric's ceiling for ``"rer"`` with ``direction="maximize"`` (1 for a fraction,
            100 for a percentage).
        baseline_sd: the baseline's seed sd for ``"standardised"`` (default: the sd of the
            ``baseline`` values given, over all their seeds).

    Example:
        >>> b, t = {0: 0.80, 1: 0.82, 2: 0.81}, {0: 0.84, 1: 0.85, 2: 0.83}
        >>> e, var, n = cell_effect(b, t, direction="maximize", scale="rer")
        >>> round(e, 4), n  # the error falls from 0.19 to 0.16: 16% of it gone
        (0.1579, 3)
    """
    scale = normalise_scale(scale)
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    sign = 1.0 if direction == "maximize" else -1.0
    seeds = sorted(set(baseline) & set(treated))
    n = len(seeds)
    if n == 0:
        return math.nan, math.nan, 0
    b = np.array([baseline[s] for s in seeds], dtype=float)
    d = np.array([treated[s] - baseline[s] for s in seeds], dtype=float)
    mean_d, mean_b = float(d.mean()), float(b.mean())
    if n >= 2:
        var_d, var_b = float(d.var(ddof=1)) / n, float(b.var(ddof=1)) / n
        cov = float(np.cov(d, b, ddof=1)[0, 1]) / n
    else:
        var_d = var_b = cov = math.nan
    if scale == "raw":
        return sign * mean_d, var_d, n
    if scale == "rer":
        if direction == "maximize":
            if not (isinstance(top, (int, float)) and math.isfinite(top)):
                raise ValueError(f"top (the metric's ceiling) must be a finite number, got {top!r}")
            err = top - mean_b
        else:
            err = mean_b
        if not err > 0:
            return math.nan, math.nan, n
        r = sign * mean_d / err
        # delta method for r = sign * D / E(B): dr/dD = sign / E, dr/dB = -r E'(B) / E, E' = -sign
        return r, (var_d + r * r * var_b + 2 * r * cov) / (err * err), n
    all_b = [float(x) for x in baseline.values()]
    sd = float(baseline_sd) if baseline_sd is not None else (statistics.stdev(all_b) if len(all_b) > 1 else math.nan)
    n_sd = len(all_b)
    if not (sd == sd and sd > 0):
        return math.nan, math.nan, n
    e = sign * mean_d / sd
    extra = e * e / (2 * (n_sd - 1)) if n_sd > 1 else 0.0
    return e, var_d / (sd * sd) + extra, n
