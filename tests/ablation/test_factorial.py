"""Factorial screening: the designs against the published minimum-aberration catalogue, and the
analysis recovering planted main effects and an interaction from synthetic data (no training)."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest

from trickbag.ablation import factorial
from trickbag.ablation.factorial import analyze, contrasts, fractional_factorial

# word-length patterns (A4, A5, ...) of the minimum-aberration designs in Chen, Sun and Wu (1993),
# "A catalogue of two-level and three-level fractional factorial designs with small runs"
CATALOGUE = {4: (8, {4: 1}), 5: (16, {5: 1}), 6: (16, {4: 3}), 7: (16, {4: 7}), 8: (16, {4: 14, 8: 1}),
             9: (32, {4: 6, 5: 8, 8: 1}), 10: (32, {4: 10, 5: 16, 8: 5})}


def test_docstring_examples():
    result = doctest.testmod(factorial, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("k", sorted(CATALOGUE))
def test_designs_are_orthogonal_resolution_iv_and_minimum_aberration(k):
    d = fractional_factorial(k)
    runs, pattern = CATALOGUE[k]
    assert d.runs == runs and d.word_length_pattern() == pattern
    x = d.matrix
    assert x.shape == (runs, k) and set(np.unique(x)) == {-1, 1}
    assert len({tuple(r) for r in x}) == runs  # no run twice
    assert (x.T @ x == runs * np.eye(k)).all()  # balanced and orthogonal main effects
    # resolution IV, checked on the columns themselves: no main effect equals +-any two-trick interaction
    for j in range(k):
        for a, b in itertools.combinations(range(k), 2):
            assert abs(x[:, j] @ (x[:, a] * x[:, b])) < runs
    # every word of the defining relation multiplies to the identity column
    for w in d.words:
        assert (np.prod(x[:, [i for i in range(k) if w >> i & 1]], axis=1) == 1).all()


def test_small_screenings_are_full_factorials_and_bad_sizes_fail():
    for k in (1, 2, 3):
        d = fractional_factorial(k)
        assert d.runs == 2 ** k and d.resolution is None and not d.generator_text()
    for bad in (0, 17, 2.0, True):
        with pytest.raises(ValueError, match="a factorial screening takes 1 to 16 tricks"):
            fractional_factorial(bad)


def test_alias_chains_of_a_resolution_iv_design():
    d = fractional_factorial(6)  # 16 runs: E = ABC, F = ABD
    chains = contrasts(d)
    mains = [c for c in chains if c.kind == "main"]
    pairs = [c for c in chains if c.kind == "interaction"]
    assert [c.effects for c in mains] == [((j,),) for j in range(6)]
    assert sorted(e for c in pairs for e in c.effects) == list(itertools.combinations(range(6), 2))
    assert len(pairs) == 7  # 15 pairs in the 16 - 1 - 6 = 9 remaining columns; 7 of them hold pairs
    names = list("ABCDEF")
    labels = {c.label(names) for c in pairs}
    assert "A x B = C x E = D x F" in labels  # from the words ABCE, ABDF (and CDEF)
    for c in pairs:  # every pair in a chain really has the chain's column
        for e in c.effects:
            col = np.prod(d.matrix[:, list(e)], axis=1)
            assert abs(col @ c.column) == d.runs


def test_analysis_recovers_planted_main_effects_and_an_interaction():
    rng = np.random.default_rng(0)
    names = ["mixup", "cutout", "ema", "label_smoothing", "radam", "warmup"]
    d = fractional_factorial(len(names))
    x = d.matrix
    seeds = 3
    # effect = mean(high) - mean(low) = 2 * coefficient
    main = {0: 0.04, 3: -0.03}
    pair = ((1, 2), 0.02)  # cutout x ema
    y = 0.80 + rng.normal(0, 0.01, (1, seeds))  # what each seed does to every run (paired)
    y = y + sum(v / 2 * x[:, [j]] for j, v in main.items())
    y = y + pair[1] / 2 * (x[:, [pair[0][0]]] * x[:, [pair[0][1]]])
    y = y + rng.normal(0, 0.003, (d.runs, seeds))
    rows = analyze(d, y, names)
    by_label = {r.label: r for r in rows}
    for j, name in enumerate(names):
        r = by_label[name]
        truth = main.get(j, 0.0)
        assert r.ci_low <= truth <= r.ci_high
        assert (r.ci_low > 0 or r.ci_high < 0) == (truth != 0)
    planted = next(r for r in rows if "cutout x ema" in r.label)
    assert planted.label == "mixup x radam = cutout x ema"  # BC = AE from the word ABCE
    assert planted.ci_low > 0 and planted.ci_low <= 0.02 <= planted.ci_high
    for r in rows:
        if r.kind == "interaction" and r is not planted:
            assert r.ci_low <= 0 <= r.ci_high
    assert {r.df for r in rows} == {(d.runs - 1) * (seeds - 1)}
    m = len(rows)
    assert all(r.p_adjusted == pytest.approx(min(1.0, m * r.p_value)) for r in rows)
    # seed effects cancel: shifting one seed's every run changes no estimate
    shifted = y.copy()
    shifted[:, 1] += 0.5
    assert [r.effect for r in analyze(d, shifted, names)] == pytest.approx([r.effect for r in rows])


def test_analysis_checks_its_input():
    d = fractional_factorial(4)
    with pytest.raises(ValueError, match=r"values must be \(runs=8, seeds\)"):
        analyze(d, np.zeros((7, 2)), list("abcd"))
    with pytest.raises(ValueError, match="names must list the design's 4 factors"):
        analyze(d, np.zeros((8, 2)), list("abc"))
