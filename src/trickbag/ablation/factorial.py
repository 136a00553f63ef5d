"""Factorial screening (``--mode factorial``): a two-level fractional factorial design over k
tricks, replicated over paired seeds, estimating every main effect and the two-trick
interactions (with the ones it cannot tell apart named), in far fewer runs than all 2^k subsets.

The design is a regular ``2^(k-p)`` fraction of minimum aberration among those of resolution
IV or more (Fries and Hunter 1980): a full factorial in ``q`` base tricks, the other ``p``
switched on and off by products of three or more base columns. At resolution IV no main effect is
confounded with another main effect or with a two-trick interaction (main effects are aliased
with three-trick interactions, which are assumed small); two-trick interactions are aliased in
chains with each other, and the report names each chain.

References:
    Box, Hunter, Hunter. Statistics for Experimenters, 2nd ed., ch. 6. Wiley 2005.
    Fries, Hunter. Minimum Aberration 2^(k-p) Designs. Technometrics 22(4), 1980.
"""

from __future__ import annotations

import functools
import itertools
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trickbag._optional import require

__all__ = ["Contrast", "Design", "EffectEstimate", "analyze", "contrasts", "fractional_factorial", "MAX_FACTORS"]

#: The largest screening this module designs (32 runs); beyond it, split the tricks into groups.
MAX_FACTORS = 16
LETTERS = "".join(c for c in string.ascii_uppercase if c != "I")  # I names the identity word


@dataclass(frozen=True)
class Design:
    """A two-level design: ``matrix[r, j]`` is +1 when run ``r`` uses factor ``j``, else -1."""

    k: int
    q: int  # base factors: runs = 2^q
    generators: tuple[int, ...]  # for each added factor, the bitmask of base factors whose product sets it
    matrix: np.ndarray  # (2^q, k) of +-1
    words: tuple[int, ...]  # the defining relation (bitmasks over the k factors), without the identity

    @property
    def runs(self) -> int:
        return self.matrix.shape[0]

    @property
    def resolution(self) -> int | None:
        """The length of the shortest word in the defining relation (None for a full factorial)."""
        return min((bin(w).count("1") for w in self.words), default=None)

    def word_length_pattern(self) -> dict[int, int]:
        """How many defining words have each length (minimum aberration minimises it from the
        shortest length up)."""
        out: dict[int, int] = {}
        for w in self.words:
            out[bin(w).count("1")] = out.get(bin(w).count("1"), 0) + 1
        return dict(sorted(out.items()))

    def generator_text(self) -> list[str]:
        """``["E = ABC", ...]`` in factor letters."""
        return [f"{LETTERS[self.q + i]} = {_letters(g)}" for i, g in enumerate(self.generators)]


def _letters(mask: int) -> str:
    return "".join(LETTERS[i] for i in range(mask.bit_length()) if mask >> i & 1)


def _base_matrix(q: int) -> np.ndarray:
    """The full 2^q factorial in standard order, as +-1 (first column alternates fastest)."""
    idx = np.arange(2 ** q)[:, None]
    return np.where((idx >> np.arange(q)) & 1, 1, -1)


def _defining_words(q: int, generators: Sequence[int]) -> list[int]:
    """Every product of the generator words ``F_{q+i} * (its base product)``, as masks over all factors."""
    gens = [g | (1 << (q + i)) for i, g in enumerate(generators)]
    words = []
    for r in range(1, len(gens) + 1):
        for combo in itertools.combinations(gens, r):
            w = 0
            for g in combo:
                w ^= g
            words.append(w)
    return words


@functools.lru_cache(maxsize=None)
def _generators(k: int, q: int) -> tuple[int, ...]:
    """Minimum-aberration generators among resolution IV+ ones: every choice of ``k - q`` products
    of three or more base factors, ranked by the word-length pattern (A4, A5, ...)."""
    p = k - q
    best: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    if p:
        candidates = [m for m in range(1, 2 ** q) if bin(m).count("1") >= 3]
        for gens in itertools.combinations(candidates, p):
            words = _defining_words(q, gens)
            lengths = [bin(w).count("1") for w in words]
            if min(lengths) < 4:
                continue
            pattern = tuple(lengths.count(n) for n in range(4, k + 1))
            if best is None or pattern < best[0]:
                best = (pattern, gens)
        if best is None:  # pragma: no cover - odd-sized products always give resolution IV
            raise AssertionError(f"no resolution IV design for {k} factors in {2 ** q} runs")
    return best[1] if best else ()


def fractional_factorial(k: int) -> Design:
    """The smallest regular two-level design over ``k`` factors with resolution IV or more (a full
    factorial for ``k <= 3``), of minimum aberration among those, found by exhaustive search over
    generators that are products of three or more base factors.

    Runs: 2 (k=1), 4 (k=2), 8 (k=3, 4), 16 (k=5..8), 32 (k=9..16).

    Example:
        >>> d = fractional_factorial(4)
        >>> d.runs, d.resolution, d.generator_text()
        (8, 4, ['D = ABC'])
        >>> d = fractional_factorial(5)
        >>> d.runs, d.resolution, d.generator_text()
        (16, 5, ['E = ABCD'])
    """
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_FACTORS:
        raise ValueError(f"a factorial screening takes 1 to {MAX_FACTORS} tricks, got {k!r}")
    q = k if k <= 3 else next(q for q in range(3, 10) if 2 ** (q - 1) >= k)
    generators = _generators(k, q)
    base = _base_matrix(q)
    cols = [base[:, j] for j in range(q)]
    for g in generators:
        cols.append(np.prod(base[:, [j for j in range(q) if g >> j & 1]], axis=1))
    matrix = np.stack(cols, axis=1).astype(int)
    return Design(k, q, tuple(generators), matrix, tuple(_defining_words(q, generators)))


@dataclass(frozen=True)
class Contrast:
    """One estimable column of the design and the effects it carries (its alias chain)."""

    column: np.ndarray  # (runs,) of +-1
    kind: str  # "main" or "interaction"
    effects: tuple[tuple[int, ...], ...]  # factor index tuples: (j,) for a main effect, (i, j) for a pair

    def label(self, names: Sequence[str]) -> str:
        return " = ".join(" x ".join(names[i] for i in e) for e in self.effects)


def contrasts(design: Design) -> list[Contrast]:
    """The main effects, then the alias chains of two-factor interactions (each chain once, in
    order of its first pair). In a design of resolution IV or more every main effect stands alone;
    chains that also hold a main effect (resolution III) are folded into that main effect's row.

    Example:
        >>> [c.effects for c in contrasts(fractional_factorial(4))][4:]
        [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
    """
    x = design.matrix
    chains: dict[bytes, list[tuple[int, ...]]] = {}
    for effect in [(j,) for j in range(design.k)] + list(itertools.combinations(range(design.k), 2)):
        col = np.prod(x[:, list(effect)], axis=1)
        key = (col * col[0]).tobytes()  # a column and its negative carry the same chain
        chains.setdefault(key, []).append(effect)
    out = []
    for effects in chains.values():
        first = effects[0]
        out.append(Contrast(np.prod(x[:, list(first)], axis=1), "main" if len(first) == 1 else "interaction",
                            tuple(effects)))
    return sorted(out, key=lambda c: (c.kind != "main", c.effects[0]))


@dataclass(frozen=True)
class EffectEstimate:
    """An effect (main or interaction chain) with its simultaneous interval."""

    label: str
    kind: str
    effect: float  # mean(metric | column = +1) - mean(metric | column = -1)
    se: float
    ci_low: float  # level 1 - alpha / m over the m reported contrasts (Bonferroni)
    ci_high: float
    p_value: float  # unadjusted
    p_adjusted: float  # Bonferroni
    df: int


def analyze(design: Design, values: np.ndarray, names: Sequence[str], *, alpha: float = 0.05) -> list[EffectEstimate]:
    """Estimate every main effect and two-factor interaction chain of ``design`` from
    ``values[run, seed]`` (the metric of each run under each paired seed).

    The model is ``y[r, s] = mu + b_s + sum_c beta_c x_c[r] + e[r, s]`` with seeds as blocks: the
    effect of column ``x`` is ``2 beta = (2 / (N n)) sum_{r,s} x[r] y[r, s]``, its standard error
    ``2 sigma / sqrt(N n)``, and ``sigma^2`` is the residual mean square of the run-by-seed table
    (``(N - 1)(n - 1)`` degrees of freedom: the seed-to-seed scatter of every contrast, pooled).
    Intervals use ``t_{1 - alpha / (2m), df}`` over the ``m`` reported contrasts, so they hold
    together and a verdict read off any of them keeps the family error at ``alpha``.

    Example:
        >>> d = fractional_factorial(3)
        >>> rng = np.random.default_rng(0)
        >>> y = 0.8 + 0.05 * (d.matrix[:, 0:1] == 1) + rng.normal(0, 0.002, (8, 3))
        >>> [round(e.effect, 3) for e in analyze(d, y, ["a", "b", "c"])][:3]
        [0.05, 0.001, -0.001]
    """
    stats = require("scipy.stats", "search", "factorial statistics")
    y = np.asarray(values, dtype=float)
    if y.ndim != 2 or y.shape[0] != design.runs:
        raise ValueError(f"values must be (runs={design.runs}, seeds), got shape {y.shape}")
    if len(names) != design.k:
        raise ValueError(f"names must list the design's {design.k} factors, got {len(names)}")
    n_runs, n = y.shape
    resid = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + y.mean()
    df = (n_runs - 1) * (n - 1)
    sigma = math.sqrt(float((resid ** 2).sum()) / df) if df > 0 else math.nan
    rows = contrasts(design)
    m = len(rows)
    crit = float(stats.t.ppf(1 - alpha / (2 * m), df)) if df > 0 else math.nan
    se = 2 * sigma / math.sqrt(n_runs * n)
    out = []
    for c in rows:
        effect = float(2.0 / (n_runs * n) * (c.column[:, None] * y).sum())
        if se > 0:
            p = float(2 * stats.t.sf(abs(effect) / se, df))
        else:
            p = math.nan if se != se else (0.0 if effect != 0 else 1.0)
        out.append(EffectEstimate(c.label(names), c.kind, effect, se, effect - crit * se, effect + crit * se, p,
                                  min(1.0, m * p) if p == p else math.nan, df))
    return out
