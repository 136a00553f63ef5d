"""The sequential design of adaptive seeds: its e-value against the integral that defines it, its
error rate under continuous monitoring and its sample size, by simulation (numpy, no training)."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import integrate, stats

from trickbag.ablation import adaptive
from trickbag.ablation import stats as S
from trickbag.ablation.adaptive import first_round_seeds, min_budget, next_trials
from trickbag.ablation.stats import (anytime_critical_value, mixture_log_evalue, sequential, t_critical_value,
                                     t_power)

ALPHA = 0.05


@pytest.mark.parametrize("module", [S, adaptive])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evalue_is_the_scale_invariant_mixture_likelihood_ratio(seed):
    # M_n = int int c^(n-1) prod phi(c x_i - theta) N(theta; 0, tau^2) dtheta dc / int c^(n-1) prod phi(c x_i) dc
    rng = np.random.default_rng(seed)
    x = rng.normal(0.4, 1.3, size=6)
    tau = 1.7
    n = len(x)

    def num(theta, c):
        return c ** (n - 1) * math.exp(-0.5 * np.sum((c * x - theta) ** 2)) * stats.norm.pdf(theta, 0, tau)

    top = integrate.dblquad(num, 0, 20, -15, 15, epsabs=1e-12)[0]
    bottom = integrate.quad(lambda c: c ** (n - 1) * math.exp(-0.5 * c * c * np.sum(x * x)), 0, 20, epsabs=1e-14)[0]
    assert mixture_log_evalue(x, tau=tau)[-1] == pytest.approx(math.log(top / bottom), rel=1e-6, abs=1e-8)
    assert mixture_log_evalue(x, tau=tau)[0] == pytest.approx(0.0, abs=1e-12)  # one difference: no evidence
    assert mixture_log_evalue(3.0 * x, tau=tau) == pytest.approx(mixture_log_evalue(x, tau=tau))  # scale-free


def test_critical_value_is_where_the_evalue_crosses():
    m, tau = 4, 2.0
    for n in (5, 8, 20, 60):
        c = anytime_critical_value(n, alpha=ALPHA, m=m, tau=tau)
        for t, above in ((c * 1.001, True), (c * 0.999, False)):
            x = np.ones(n)
            x[0] += 1.0
            # rescale the spread so the one-sample t statistic equals t exactly
            d = x - x.mean()
            sd = math.sqrt(np.sum(d * d) / (n - 1))
            x = d * (1.0 / (t / math.sqrt(n))) / sd + 1.0
            assert stats.ttest_1samp(x, 0).statistic == pytest.approx(t)
            assert (mixture_log_evalue(x, tau=tau)[-1] >= math.log(m / ALPHA)) == above
    assert math.isinf(anytime_critical_value(2, alpha=ALPHA, m=m, tau=tau))
    assert anytime_critical_value(50, alpha=ALPHA) > t_critical_value(50, alpha=ALPHA)  # the price of peeking


def test_sequential_interval_and_decision_agree_with_the_evalue():
    rng = np.random.default_rng(3)
    m = 3
    for _ in range(200):
        n = int(rng.integers(3, 25))
        ref = dict(enumerate(rng.normal(0, 1, n)))
        arm = {s: v + rng.normal(rng.choice([0.0, 1.5]), 1.0) for s, v in ref.items()}
        r = sequential(ref, arm, alpha=ALPHA, m=m)
        x = np.array([arm[s] - ref[s] for s in range(n)])
        crossed = np.nonzero(mixture_log_evalue(x) >= math.log(m / ALPHA))[0]
        assert r.decided_at == (int(crossed[0]) + 1 if crossed.size else None)
        assert (r.ci_low > 0 or r.ci_high < 0) == (r.decided_at is not None) == (m * r.p_value < ALPHA)
        assert r.ci_low <= r.mean <= r.ci_high or r.decided_at is not None


def _first_crossing(x, m, tau=S.TAU):
    """(crossed?, n at the first crossing or N) per simulated arm, along the last axis."""
    hit = mixture_log_evalue(x, tau=tau) >= math.log(m / ALPHA)
    return hit.any(-1), np.where(hit.any(-1), hit.argmax(-1) + 1, x.shape[-1])


def _upper_ok(errors: int, sims: int) -> bool:
    """False only when the error count is significantly above alpha (one-sided binomial test at 0.001)."""
    return stats.binomtest(errors, sims, ALPHA, alternative="greater").pvalue > 0.001


def test_no_effect_false_verdict_rate_stays_below_alpha_under_continuous_monitoring():
    # 4000 ablations of a baseline and 4 arms with no effect, each looked at after every seed up to 30
    rng = np.random.default_rng(12)
    sims, arms, seeds = 4000, 4, 30
    seed_effect = rng.normal(0, 2.0, (sims, 1, seeds))  # what a seed does to every arm alike (paired)
    runs = seed_effect + rng.normal(0, 1.0, (sims, arms + 1, seeds))
    diffs = runs[:, 1:, :] - runs[:, :1, :]
    crossed, _ = _first_crossing(diffs, arms)
    errors = int(crossed.any(axis=1).sum())
    assert _upper_ok(errors, sims), f"{errors} of {sims} null ablations declared an effect"
    # the check has teeth: re-running a Bonferroni t-test after every seed fails it
    n = np.arange(2, seeds + 1)
    k = np.arange(1, seeds + 1)
    mean = np.cumsum(diffs, -1) / k
    sd = np.sqrt(np.maximum(np.cumsum(diffs ** 2, -1) - k * mean ** 2, 0) / np.maximum(k - 1, 1))
    t = np.abs(mean[..., 1:]) / (sd[..., 1:] / np.sqrt(n))
    naive = int((t >= t_critical_value(n, alpha=ALPHA, m=arms)).any(-1).any(-1).sum())
    assert not _upper_ok(naive, sims), f"the naive re-run t-test stayed valid ({naive} of {sims})"


def test_one_sd_effect_decides_with_fewer_seeds_than_the_fixed_design_of_equal_power():
    rng = np.random.default_rng(7)
    sims, budget = 3000, 30  # seeds per arm at most
    x = rng.normal(1.0, 1.0, (sims, budget))  # paired differences with a true effect of one sd
    crossed, at = _first_crossing(x, 1)
    right = crossed & (np.take_along_axis(np.cumsum(x, -1), (at - 1)[:, None], -1)[:, 0] > 0)
    power = right.mean()
    assert power > 0.9
    n = np.arange(2, 200)
    fixed_n = int(n[np.argmax(t_power(1.0, n, t_critical_value(n, alpha=ALPHA)) >= power)])
    mean_n = at.mean()
    se = at.std(ddof=1) / math.sqrt(sims)
    assert mean_n + 4 * se < fixed_n, (mean_n, fixed_n, power)


def test_planner_stops_decided_arms_and_keeps_the_budget():
    rng = np.random.default_rng(5)
    effects = [0.0, 0.05, 0.0, -0.05]  # arm 0 is the baseline; noise sd 0.01 per run
    seed_noise = rng.normal(0, 0.02, 200)
    budget = 70
    values = [dict() for _ in effects]
    attempted = [set() for _ in effects]
    rounds = 0
    while todo := next_trials(values, attempted, budget=budget):
        rounds += 1
        for a, s in todo:
            assert s not in attempted[a]
            attempted[a].add(s)
            values[a][s] = 0.8 + seed_noise[s] + effects[a] + rng.normal(0, 0.01)
    assert sum(len(a) for a in attempted) <= budget and rounds > 1
    start = first_round_seeds(4)
    for a in (1, 3):  # the arms with an effect were decided, and got no seed after that
        r = sequential(values[0], values[a], alpha=ALPHA, m=3)
        assert r.decided_at is not None and len(attempted[a]) == r.decided_at < len(attempted[0])
        assert (r.ci_low > 0) == (effects[a] > 0)
    r = sequential(values[0], values[2], alpha=ALPHA, m=3)  # the null arm got the rest of the budget
    assert r.decided_at is None and len(attempted[2]) > start
    assert attempted[2] <= attempted[0]  # every seed of an arm has its baseline pair
    assert budget - sum(len(a) for a in attempted) < 2  # stopped only when the next pair did not fit


def test_planner_validates_its_budget():
    with pytest.raises(ValueError, match=r"budget 10 is too small: the first look needs 30 trials"):
        next_trials([{}] * 6, [set()] * 6, budget=10)
    assert min_budget(6) == 30
    with pytest.raises(ValueError, match="budget must be an integer >= 1"):
        next_trials([{}] * 2, [set()] * 2, budget=0)
    with pytest.raises(ValueError, match="tau"):
        mixture_log_evalue([1.0, 2.0], tau=0.0)
