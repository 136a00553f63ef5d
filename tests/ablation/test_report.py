"""The report's pieces that must not mislead: colours read off the intervals drawn, soft-target
arms marked on the training-loss plot, time overheads marked as noise when trials shared a machine."""

from __future__ import annotations

import numpy as np

from trickbag.ablation.arms import make_arms, parse_tricks
from trickbag.ablation.report import GREEN, GREY, RED, bar_color, changes_target, table_text
from trickbag.ablation.stats import interval_verdict


def test_bar_colours_are_the_verdicts_of_the_intervals_drawn():
    rng = np.random.default_rng(0)
    for _ in range(500):
        low = float(rng.normal(0, 1))
        high = low + float(rng.exponential(1))
        for maximize in (True, False):
            verdict = interval_verdict(5, low, high, maximize=maximize)
            color = bar_color({"low": low, "high": high}, maximize)
            assert color == {"helps": GREEN, "hurts": RED}.get(verdict, GREY)


def test_arms_that_change_the_target_are_known():
    arms = {a.label: a for a in make_arms(parse_tricks("label_smoothing,mixup,cutmix,focal_loss,flooding,cutout,ema"))}
    assert [label.split(":")[0] for label, a in arms.items() if changes_target(a)] == [
        "label_smoothing", "mixup", "cutmix", "focal_loss"]


def test_table_says_how_its_interval_was_made():
    rows = [{"label": "baseline", "reference": True, "n": 5, "mean": 0.8},
            {"label": "mixup", "reference": False, "n": 5, "mean": 0.85, "effect": 0.05, "low": 0.03, "high": 0.07,
             "p_adj": 0.001, "verdict": "helps", "mde": 0.01, "seeds_needed": None, "design": "fixed", "m": 1},
            ]
    text = table_text(rows, "val_acc")
    assert "simultaneous over the 1 arms (Bonferroni)" in text and "[+0.0300, +0.0700]" in text
    rows[1].update(design="sequential", low=-0.01, verdict="no evidence at 5 seeds", seeds_needed=12)
    text = table_text(rows, "val_acc")
    assert "95% CS (anytime)" in text and "Lai's anytime-valid confidence sequence" in text
    assert text.splitlines()[2].rstrip().endswith("12")
    assert all(line == line.rstrip() for line in text.splitlines())
