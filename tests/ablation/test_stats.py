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
    assert verdict(one, math.nan, maximize=True) == "needs 2+ seeds (has 1)"


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
