"""The arms of an ablation: which tricks each one trains with."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trickbag import catalog
from trickbag._validate import check_choice
from trickbag.train.config import TrickSpec, parse_trick

__all__ = ["Arm", "MODES", "parse_tricks", "make_arms"]

MODES = ("add-one", "leave-one-out", "grid", "factorial")


@dataclass(frozen=True)
class Arm:
    """One configuration of the ablation: its label and the tricks added to the base config.

    ``effect_of`` names the trick whose effect the arm measures against the reference arm
    (add-one: the arm itself; leave-one-out: the trick left out, with the sign turned so that
    a positive effect means the trick helps)."""

    label: str
    tricks: tuple[TrickSpec, ...]
    reference: bool = False
    effect_of: str | None = None
    sign: int = 1


def parse_tricks(spec: str | Sequence[Any]) -> list[TrickSpec]:
    """Tricks from the command line (``"label_smoothing,mixup:alpha=0.2,prob=0.5,cutout"``:
    a ``key=value`` without a name continues the previous trick) or from a YAML list. Each
    carries the parameters in force, the catalog's defaults included, so an arm's label says
    what ran (``cutout:size=8``, not ``cutout``).

    Example:
        >>> [t.label() for t in parse_tricks("label_smoothing,mixup:alpha=0.2,cutout")]
        ['label_smoothing:smoothing=0.1', 'mixup:alpha=0.2', 'cutout:size=8']
    """
    if isinstance(spec, str):
        items: list[str] = []
        for token in filter(None, (t.strip() for t in spec.split(","))):
            if "=" in token and ":" not in token and items:
                items[-1] += "," + token
            else:
                items.append(token)
        tricks = [parse_trick(t) for t in items]
    else:
        tricks = [parse_trick(t) for t in spec]
    if not tricks:
        raise ValueError("give at least one trick to ablate (--tricks a,b,c or ablation.tricks in the config)")
    # unknown names fail here, with the closest ones; defaults become explicit
    tricks = [TrickSpec(t.name, {**t.params, **{k: v for k, v in catalog.get(t.name).defaults.items()
                                                 if k not in t.params}}) for t in tricks]
    labels = [t.label() for t in tricks]
    dupes = {x for x in labels if labels.count(x) > 1}
    if dupes:
        raise ValueError(f"the same arm is listed twice: {sorted(dupes)}")
    return tricks


def make_arms(tricks: Sequence[TrickSpec], mode: str = "add-one") -> list[Arm]:
    """add-one: a baseline plus one arm per trick; leave-one-out: all tricks plus the set
    without each; grid: every subset (2^k arms); factorial: the runs of a two-level fractional
    factorial design of resolution IV (``trickbag.ablation.factorial``), each the subset of tricks
    its row switches on (8 runs for 4 tricks, 16 for 5 to 8, 32 for 9 to 16).

    Example:
        >>> [a.label for a in make_arms(parse_tricks("mixup,cutout"), "leave-one-out")]
        ['all', 'without mixup:alpha=0.2', 'without cutout:size=8']
    """
    check_choice("mode", mode, MODES)
    tricks = list(tricks)
    if mode == "add-one":
        return [Arm("baseline", (), reference=True)] + [Arm(t.label(), (t,), effect_of=t.label()) for t in tricks]
    if mode == "leave-one-out":
        arms = [Arm("all", tuple(tricks), reference=True)]
        for t in tricks:
            rest = tuple(x for x in tricks if x is not t)
            arms.append(Arm(f"without {t.label()}", rest, effect_of=t.label(), sign=-1))
        return arms
    if mode == "factorial":
        from trickbag.ablation.factorial import fractional_factorial

        design = fractional_factorial(len(tricks))
        arms = []
        for r, row in enumerate(design.matrix):
            combo = tuple(t for t, level in zip(tricks, row) if level > 0)
            label = " + ".join(t.label() for t in combo) or "baseline"
            arms.append(Arm(f"run {r + 1}: {label}", combo))
        return arms
    if len(tricks) > 8:
        raise ValueError(f"grid mode over {len(tricks)} tricks is {2 ** len(tricks)} arms; ablate at most 8 at once")
    arms = []
    for k in range(len(tricks) + 1):
        for combo in itertools.combinations(tricks, k):
            label = " + ".join(t.label() for t in combo) or "baseline"
            arms.append(Arm(label, combo, reference=(k == 0), effect_of=label if k else None))
    return arms
