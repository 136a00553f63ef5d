"""Ablation statistics against scipy and hand-computed references."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from trickbag.ablation.stats import holm, paired, verdict

REF = {0: 0.81, 1: 0.79, 2: 0.84, 3: 0.80, 4: 0.82}
ARM = {0: 0.83, 1: 0.80, 2: 0.86, 3: 0.83, 4: 0.82}


def test_paired_matches_scipy_and_the_t_formula():
    r = paired(REF, ARM)
    a = [ARM[s] for s in sorted(ARM)]
    b = [REF[s] for s in sorted(REF)]
    expected = stats.ttest_rel(a, b)
    d = [x - y for x, y in zip(a, b)]
    n, mean = len(d), sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert r.n == 5 and r.mean == pytest.approx(mean) and r.std == pytest.approx(sd)
    assert r.p_value == pytest.approx(expected.pvalue)
    assert (r.ci_low, r.ci_high) == pytest.approx((mean - half, mean + half))
    t = mean / (sd / math.sqrt(n))
    assert r.p_value == pytest.approx(2 * stats.t.sf(abs(t), n - 1))


def test_only_common_seeds_are_paired_and_degenerate_cases():
    r = paired({0: 1.0, 1: 2.0, 2: 3.0}, {1: 2.5, 2: 3.5, 7: 9.0})
    assert r.n == 2 and r.mean == pytest.approx(0.5) and r.std == 0.0 and r.p_value == 0.0
    same = paired({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert same.mean == 0.0 and same.p_value == 1.0
    one = paired({0: 1.0}, {0: 2.0})
    assert one.n == 1 and math.isnan(one.p_value)
    assert verdict(one, math.nan, maximize=True) == "no verdict below 3 seeds (has 1)"


def test_holm_step_down():
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(holm([0.2, math.nan])[1]) and holm([0.2, math.nan])[0] == pytest.approx(0.2)
    assert holm([0.9, 0.8]) == [1.0, 1.0]


def test_verdicts_follow_the_direction():
    better = paired(REF, {s: v + 0.05 for s, v in REF.items() if True} | {0: 0.87})
    assert verdict(better, 0.001, maximize=True) == "helps"
    assert verdict(better, 0.001, maximize=False) == "hurts"
    assert verdict(better, 0.2, maximize=True) == "no evidence at 5 seeds"


def test_bonferroni_and_interval_verdicts():
    from trickbag.ablation.stats import bonferroni, interval_verdict

    assert bonferroni([0.01, 0.3, math.nan, 0.02]) == pytest.approx([0.03, 0.9, math.nan, 0.06], nan_ok=True)
    assert interval_verdict(5, 0.01, 0.02, maximize=True) == "helps"
    assert interval_verdict(5, -0.02, -0.01, maximize=True) == "hurts"
    assert interval_verdict(5, -0.02, -0.01, maximize=False) == "helps"
    assert interval_verdict(5, -0.01, 0.01, maximize=True) == "no evidence at 5 seeds"
    assert interval_verdict(5, 0.0, 0.01, maximize=True) == "no evidence at 5 seeds"  # touching zero is not excluding it
    assert interval_verdict(2, 0.01, 0.02, maximize=True) == "no verdict below 3 seeds (has 2)"


def test_fixed_design_interval_is_the_bonferroni_t_interval():
    m = 4
    r = paired(REF, ARM, confidence=1 - 0.05 / m)
    d = [ARM[s] - REF[s] for s in sorted(REF)]
    half = stats.t.ppf(1 - 0.05 / (2 * m), 4) * stats.tstd(d) / math.sqrt(5)
    assert (r.ci_low, r.ci_high) == pytest.approx((sum(d) / 5 - half, sum(d) / 5 + half))
    # the interval excludes zero exactly when m * p < alpha
    assert (r.ci_low > 0) == (m * r.p_value < 0.05)


def test_power_matches_simulated_t_tests():
    import numpy as np

    from trickbag.ablation.stats import t_critical_value, t_power

    rng = np.random.default_rng(0)
    n, d, sims = 6, 1.2, 20000
    x = rng.normal(d, 1.0, (sims, n))
    t = x.mean(1) / (x.std(1, ddof=1) / math.sqrt(n))
    c = t_critical_value(n, alpha=0.05, m=3)
    simulated = float((np.abs(t) >= c).mean())
    assert t_power(d, n, c) == pytest.approx(simulated, abs=4 * math.sqrt(0.25 / sims))
    assert c == pytest.approx(stats.t.ppf(1 - 0.05 / 6, n - 1))
    assert t_power(0.0, n, c) == pytest.approx(0.05 / 3)  # at no effect, power is the level


@pytest.mark.parametrize("design", ["fixed", "sequential"])
def test_min_detectable_effect_and_seeds_needed_invert_the_power(design):
    from trickbag.ablation.stats import (anytime_critical_value, min_detectable_effect, seeds_needed,
                                         t_critical_value, t_power)

    def crit(n):
        return t_critical_value(n, alpha=0.05, m=5) if design == "fixed" else anytime_critical_value(n, alpha=0.05, m=5)

    sd = 0.004
    mde = min_detectable_effect(8, sd, m=5, design=design)
    assert t_power(mde / sd, 8, crit(8)) == pytest.approx(0.8, abs=1e-6)
    assert min_detectable_effect(16, sd, m=5, design=design) < mde  # more seeds, smaller effects
    n = seeds_needed(0.005, sd, m=5, design=design)
    assert t_power(0.005 / sd, n, crit(n)) >= 0.8 > t_power(0.005 / sd, n - 1, crit(n - 1))
    assert seeds_needed(0.0, sd) is None and seeds_needed(1e-9, sd, max_seeds=50) is None
    with pytest.raises(ValueError, match="design must be 'fixed' or 'sequential', got 'bayes'"):
        min_detectable_effect(8, sd, design="bayes")
    with pytest.raises(ValueError, match="power must be in \\(0, 1\\), got 80"):
        seeds_needed(0.01, sd, power=80)
