"""Arms: trick lists from the command line and the three modes."""

from __future__ import annotations

import pytest

from trickbag.ablation.arms import make_arms, parse_tricks


def test_command_line_lists_keep_parameters_together():
    tricks = parse_tricks("label_smoothing,mixup:alpha=0.2,soft_targets=false,cutout:size=8,mixup:alpha=0.4")
    assert [t.label() for t in tricks] == ["label_smoothing:smoothing=0.1", "mixup:alpha=0.2,soft_targets=False",
                                           "cutout:size=8", "mixup:alpha=0.4"]  # the defaults in force are shown
    assert parse_tricks([{"mixup": {"alpha": 0.2}}, "ema"])[1].name == "ema"


def test_bad_lists():
    with pytest.raises(ValueError, match="unknown trick 'mixpu'; did you mean 'mixup'"):
        parse_tricks("mixpu")
    with pytest.raises(ValueError, match="the same arm is listed twice"):
        parse_tricks("ema,ema")
    with pytest.raises(ValueError, match="at least one trick"):
        parse_tricks("")


def test_modes():
    tricks = parse_tricks("a_placeholder".replace("a_placeholder", "mixup,cutout,ema"))
    add = make_arms(tricks, "add-one")
    assert [a.label for a in add] == ["baseline", "mixup:alpha=0.2", "cutout:size=8", "ema:decay=0.999"] and add[0].reference
    loo = make_arms(tricks, "leave-one-out")
    assert [len(a.tricks) for a in loo] == [3, 2, 2, 2] and loo[1].sign == -1 and loo[1].effect_of == "mixup:alpha=0.2"
    grid = make_arms(tricks, "grid")
    assert len(grid) == 8 and grid[-1].label == "mixup:alpha=0.2 + cutout:size=8 + ema:decay=0.999"
    with pytest.raises(ValueError, match="unknown mode 'pairs'"):
        make_arms(tricks, "pairs")


def test_factorial_arms_are_the_design_runs():
    import numpy as np

    from trickbag.ablation.factorial import fractional_factorial

    tricks = parse_tricks("mixup,cutout,ema,label_smoothing")
    arms = make_arms(tricks, "factorial")
    x = fractional_factorial(4).matrix
    assert len(arms) == 8 and not any(a.reference for a in arms)
    on = np.array([[t in a.tricks for t in tricks] for a in arms])
    assert (on == (x > 0)).all()  # each arm is its row of the design
    assert arms[0].label == "run 1: baseline" and arms[-1].label == "run 8: mixup:alpha=0.2 + cutout:size=8 + ema:decay=0.999 + label_smoothing:smoothing=0.1"
