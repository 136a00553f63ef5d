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
    assert "seeds80" not in text and "--seeds auto" in text  # no post-hoc seed counts; the valid way instead
    assert "biased away from zero" in " ".join(text.split()) and "p(sign)" not in text  # adaptive: no fixed-design p
    assert all(line == line.rstrip() for line in text.splitlines())


def test_curves_of_one_epoch_runs_show_their_points(tmp_path):
    """A one-epoch ablation's curve plots were empty axes: each arm's point is drawn (with its
    min-max whisker), in the arm's colour."""
    import numpy as np
    from matplotlib import image

    from trickbag.ablation.report import _plot_curves

    arms = make_arms(parse_tricks("ema"))
    data = {"arms": [{"arm": a, "history": {0: [{"epoch": 1, "val_acc": v}], 1: [{"epoch": 1, "val_acc": v + 0.02}]}}
                     for a, v in zip(arms, (0.6, 0.8))]}
    assert _plot_curves(data, "val_acc", tmp_path / "c.png", "validation accuracy")
    px = (image.imread(tmp_path / "c.png")[..., :3] * 255).reshape(-1, 3)
    blue = np.array([0x1F, 0x77, 0xB4])
    assert (np.abs(px - blue).max(axis=1) < 30).sum() > 80  # the arm's marker and whisker (the legend alone has ~45)
