"""The atlas's meta-analysis against references: statsmodels' combine_effects (DerSimonian-Laird,
Paule-Mandel, the HKSJ interval), metafor's published REML fit of the BCG vaccine trials, the
restricted likelihood maximised numerically, and synthetic tasks with a known effect."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trickbag.atlas.meta import cell_effect, random_effects, tau2_dl, tau2_pm, tau2_reml

# metafor's dat.bcg (Colditz et al. 1994): BCG vaccine trials, (tpos, tneg, cpos, cneg) per trial.
BCG = [(4, 119, 11, 128), (6, 300, 29, 274), (3, 228, 11, 209), (62, 13536, 248, 12619), (33, 5036, 47, 5761),
       (180, 1361, 372, 1079), (8, 2537, 10, 619), (505, 87886, 499, 87892), (29, 7470, 45, 7232),
       (17, 1699, 65, 1600), (186, 50448, 141, 27197), (5, 2493, 3, 2338), (27, 16886, 29, 17825)]


def bcg_log_risk_ratios():
    tp, tn, cp, cn = np.array(BCG, dtype=float).T
    y = np.log((tp / (tp + tn)) / (cp / (cp + cn)))
    v = 1 / tp - 1 / (tp + tn) + 1 / cp - 1 / (cp + cn)
    return y, v


def test_dersimonian_laird_and_hksj_match_statsmodels():
    sm = pytest.importorskip("statsmodels.stats.meta_analysis")
    y, v = bcg_log_risk_ratios()
    ref = sm.combine_effects(y, v, method_re="dl", use_t=True)  # "dl" (= "chi2"): DerSimonian-Laird
    r = random_effects(y, v, method="dl", hksj="standard")
    assert r.tau2 == pytest.approx(ref.tau2, abs=1e-6)
    assert r.estimate == pytest.approx(ref.mean_effect_re, abs=1e-6)
    assert r.se == pytest.approx(ref.sd_eff_w_re_hksj, abs=1e-6)
    low, high = ref.conf_int(use_t=True)[3]  # the random-effects interval with the HKSJ (WLS) scale
    assert (r.ci_low, r.ci_high) == pytest.approx((low, high), abs=1e-6)
    assert r.q == pytest.approx(ref.q, abs=1e-6) and r.i2 == pytest.approx(max(0.0, ref.i2), abs=1e-6)
    assert tau2_dl(y, v) == pytest.approx(ref.tau2, abs=1e-9)


def test_paule_mandel_matches_statsmodels_iterated():
    sm = pytest.importorskip("statsmodels.stats.meta_analysis")
    y, v = bcg_log_risk_ratios()
    # statsmodels' "iterated" (= "pm") is Paule-Mandel, not REML; iterate it to convergence
    ref = sm.combine_effects(y, v, method_re="iterated", use_t=True, atol=1e-12, maxiter=1000)
    r = random_effects(y, v, method="pm", hksj="standard")
    assert tau2_pm(y, v) == pytest.approx(ref.tau2, abs=1e-6)
    assert r.estimate == pytest.approx(ref.mean_effect_re, abs=1e-6)
    assert (r.ci_low, r.ci_high) == pytest.approx(tuple(ref.conf_int(use_t=True)[3]), abs=1e-6)


def restricted_loglik(tau2, y, v):
    w = 1 / (v + tau2)
    mu = w @ y / w.sum()
    return -0.5 * (np.log(v + tau2).sum() + math.log(w.sum()) + w @ (y - mu) ** 2)


def test_reml_matches_metafor_and_the_maximised_restricted_likelihood():
    from scipy import optimize

    y, v = bcg_log_risk_ratios()
    # reference: maximise the restricted log-likelihood directly (a grid, then a bounded search)
    grid = np.linspace(0, 2, 2001)
    best = grid[np.argmax([restricted_loglik(t, y, v) for t in grid])]
    ref = optimize.minimize_scalar(lambda t: -restricted_loglik(t, y, v), bounds=(max(0, best - 0.01), best + 0.01),
                                   method="bounded", options={"xatol": 1e-12})
    assert tau2_reml(y, v) == pytest.approx(ref.x, abs=1e-6)
    r = random_effects(y, v, method="reml", hksj="standard")
    # metafor: rma(yi, vi, data=dat.bcg-escalc(RR), method="REML", test="knha"), as published to 4 digits
    assert round(r.tau2, 4) == 0.3132 and round(r.estimate, 4) == -0.7145
    assert round(r.se, 4) == 0.1808 and (round(r.ci_low, 4), round(r.ci_high, 4)) == (-1.1084, -0.3206)
    assert round(r.q, 4) == 152.2330 and r.k == 13
    # prediction interval: mu +- t_{k-2} sqrt(tau^2 + SE^2), computed here by hand
    from scipy import stats

    half = stats.t.ppf(0.975, 11) * math.sqrt(r.tau2 + r.se**2)
    assert (r.pi_low, r.pi_high) == pytest.approx((r.estimate - half, r.estimate + half), abs=1e-12)


def test_an_injected_constant_effect_is_recovered_with_tau_near_zero():
    rng = np.random.default_rng(21)
    effects, variances = [], []
    for task in range(8):
        base = rng.uniform(0.6, 0.9)  # tasks differ in baseline accuracy, not in the trick's effect
        b = {s: base + rng.normal(0, 0.01) for s in range(10)}
        t = {s: b[s] + 0.02 + rng.normal(0, 0.004) for s in range(10)}
        e, var, n = cell_effect(b, t, direction="maximize", scale="raw")
        effects.append(e), variances.append(var)
    for method in ("reml", "dl", "pm"):
        r = random_effects(effects, variances, method=method)
        assert r.tau < 0.003, (method, r.tau)
        assert r.ci_low < 0.02 < r.ci_high and abs(r.estimate - 0.02) < 0.002
        assert r.pi_low <= r.ci_low and r.ci_high <= r.pi_high


def test_heterogeneous_effects_give_tau_and_i2():
    rng = np.random.default_rng(3)
    y = rng.normal(0.05, 0.03, size=12)  # true effects spread with sd 0.03, measured precisely
    r = random_effects(y, np.full(12, 1e-6))
    assert 0.015 < r.tau < 0.05 and r.i2 > 0.95
    assert r.pi_high - r.pi_low > 2 * (r.ci_high - r.ci_low)


@pytest.mark.parametrize("method", ["reml", "dl", "pm"])
@pytest.mark.parametrize("hksj", ["modified", "standard"])
def test_i2_in_range_and_prediction_interval_contains_the_interval(method, hksj):
    rng = np.random.default_rng(7)
    for _ in range(200):
        k = int(rng.integers(3, 10))
        v = rng.exponential(0.01, size=k)
        y = rng.normal(rng.normal(), rng.exponential(0.1), size=k) + rng.normal(0, np.sqrt(v))
        r = random_effects(y, v, method=method, hksj=hksj)
        assert 0.0 <= r.i2 <= 1.0 and r.tau2 >= 0
        assert r.pi_low <= r.ci_low <= r.estimate <= r.ci_high <= r.pi_high
        if hksj == "modified":  # never narrower than the plain random-effects interval
            plain = 1 / math.sqrt(np.sum(1 / (v + r.tau2)))
            assert r.se >= plain * (1 - 1e-12)


def test_edge_cases_one_and_two_tasks_identical_effects_zero_variance():
    one = random_effects([0.3], [0.01])
    assert one.k == 1 and one.estimate == 0.3 and math.isnan(one.ci_low) and "nothing to pool" in one.note
    two = random_effects([0.1, 0.3], [0.01, 0.01])
    assert two.ci_low < 0.2 < two.ci_high and math.isnan(two.pi_low) and "no prediction interval" in two.note
    same = random_effects([0.05] * 5, [1e-4, 2e-4, 1e-4, 3e-4, 1e-4], method="reml")
    assert same.tau == 0 and same.estimate == pytest.approx(0.05) and same.i2 == 0
    assert same.ci_low < 0.05 < same.ci_high  # modified HKSJ: the seeds' own noise still counts
    std = random_effects([0.05] * 5, [1e-4] * 5, hksj="standard")
    assert std.ci_high - std.ci_low == pytest.approx(0, abs=1e-12)  # the textbook HKSJ collapses
    zero = random_effects([0.1, 0.1, 0.2, 0.15], [0.0, 0.0, 1e-4, 1e-4])
    assert zero.zero_variance == 2 and all(map(math.isfinite, (zero.estimate, zero.ci_low, zero.tau)))
    allzero = random_effects([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    assert allzero.estimate == 0 and allzero.tau == 0
    counted = random_effects([0.1, 0.2, -0.1], [0.01] * 3, verdicts=["helps", "no evidence at 5 seeds", "hurts"])
    assert (counted.helps, counted.hurts, counted.undecided) == (1, 1, 1)


def test_bad_input_names_the_value():
    with pytest.raises(ValueError, match="method must be one of.*'bayes'"):
        random_effects([0.1, 0.2], [0.01, 0.01], method="bayes")
    with pytest.raises(ValueError, match="variances must be >= 0"):
        random_effects([0.1, 0.2], [0.01, -0.01])
    with pytest.raises(ValueError, match="scale must be one of"):
        cell_effect({0: 1.0}, {0: 1.0}, direction="maximize", scale="percent")
    with pytest.raises(ValueError, match="direction must be"):
        cell_effect({0: 1.0}, {0: 1.0}, direction="up", scale="raw")


def test_relative_error_reduction_and_its_delta_method_variance():
    b, t = {0: 0.80, 1: 0.82, 2: 0.81}, {0: 0.84, 1: 0.85, 2: 0.83}
    e, _, n = cell_effect(b, t, direction="maximize", scale="rer")
    assert e == pytest.approx((0.84 - 0.81) / (1 - 0.81)) and n == 3
    pct = cell_effect({s: 100 * x for s, x in b.items()}, {s: 100 * x for s, x in t.items()}, direction="maximize",
                      scale="rer", top=100.0)
    assert pct[0] == pytest.approx(e) and pct[1] == pytest.approx(cell_effect(b, t, direction="maximize",
                                                                               scale="rer")[1])
    # an error rate to minimise: 0.19 -> 0.16 is the same 15.8% of the error removed
    err = cell_effect({s: 1 - x for s, x in b.items()}, {s: 1 - x for s, x in t.items()}, direction="minimize",
                      scale="rer")
    assert err[0] == pytest.approx(e)
    # the delta method's variance against the spread of the estimate over many simulated tasks
    rng = np.random.default_rng(0)
    estimates, deltas = [], []
    for _ in range(4000):
        base = rng.normal(0.80, 0.01, size=8)
        treat = base + rng.normal(0.03, 0.006, size=8)
        e, var, _ = cell_effect(dict(enumerate(base)), dict(enumerate(treat)), direction="maximize", scale="rer")
        estimates.append(e), deltas.append(var)
    assert np.mean(deltas) == pytest.approx(np.var(estimates), rel=0.1)


def test_standardised_effects_are_oriented_and_in_seed_sds():
    b = {0: 1.0, 1: 1.2, 2: 0.8, 3: 1.0}  # a loss: lower is better, sd 0.163
    t = {s: x - 0.1 for s, x in b.items()}
    e, var, n = cell_effect(b, t, direction="minimize", scale="standardized")
    sd = float(np.std(list(b.values()), ddof=1))
    assert e == pytest.approx(0.1 / sd) and var == pytest.approx(e * e / 6)  # no variance of d: only the sd's
    assert cell_effect(b, t, direction="minimize", scale="standardised", baseline_sd=0.05)[0] == pytest.approx(2.0)
    assert math.isnan(cell_effect({0: 1.0, 1: 1.0}, {0: 1.1, 1: 1.1}, direction="maximize", scale="standardised")[0])


def test_docstring_examples_run():
    import doctest

    from trickbag.atlas import meta, report

    for module in (meta, report):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, module.__name__
