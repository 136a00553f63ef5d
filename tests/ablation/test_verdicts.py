"""Verdicts a statistician would sign (issue 20): the direction of every metric, no verdict from two
seeds or from an sd below the metric's resolution, failed trials in every row, data variance, skew,
power at an upper limit of the sd, adaptive mode, one multiplicity rule. The simulations go through
the report's own rows (``rows_of``), seeded, in a few seconds."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from trickbag.ablation import report
from trickbag.ablation.runner import AblationSpec, spec_from_config
from trickbag.ablation.arms import parse_tricks
from trickbag.ablation.stats import bonferroni, min_detectable_effect, paired, t_critical_value, t_power, verdict
from trickbag.train.config import load_config

BASE = {
    "data": {"name": "synthetic", "options": {"num_train": 480, "num_test": 64, "shape": [1, 8, 8], "num_classes": 3},
             "batch_size": 32, "val_fraction": 0.25, "subset": 200, "label_noise": 0.2},
    "model": {"name": "mlp", "hidden": [8]},
    "train": {"epochs": 1, "threads": 1},
}
FIVE = "mixup,cutout,flooding:b=0.1,ema,label_smoothing"


def spec(tricks: str = FIVE, seeds: int = 5, **kw) -> AblationSpec:
    return AblationSpec(load_config(BASE), parse_tricks(tricks), seeds, **kw)


def data(sp: AblationSpec, values, failures=None) -> dict:
    failures = failures or [[] for _ in values]
    return {"spec": sp, "workers": {}, "arms": [
        {"arm": a, "values": dict(v), "train_time": {}, "history": {}, "failures": f}
        for a, v, f in zip(sp.arms, values, failures)]}


@pytest.fixture
def fast_rows(monkeypatch):
    """rows_of without the power solver (the simulations test verdicts and intervals, not MDE)."""
    monkeypatch.setattr(report, "min_detectable_effect", lambda *a, **k: math.nan)
    return report.rows_of


# ---- 1. one direction rule ---------------------------------------------------------------------

@pytest.mark.parametrize("metric, direction", [
    ("val_acc", "maximize"), ("val_loss", "minimize"), ("val_error", "minimize"), ("val_err_top1", "minimize"),
    ("val_nll", "minimize"), ("val_ece", "minimize"), ("val_perplexity", "minimize"), ("val_f1", "maximize")])
def test_the_direction_is_the_packages_one_rule(metric, direction):
    from trickbag.loop import metric_mode
    from trickbag.search.runner import _options

    cfg = load_config(BASE)
    assert spec_from_config(cfg, tricks="mixup", metric=metric).direction == direction
    assert {"max": "maximize", "min": "minimize"}[metric_mode(metric)] == direction
    assert _options(cfg, metric=metric)["direction"] == direction


def test_direction_can_be_set_and_is_printed_under_the_table(fast_rows):
    cfg = load_config({**BASE, "ablation": {"tricks": "mixup", "direction": "min"}})
    assert spec_from_config(cfg).direction == "minimize"
    assert spec_from_config(load_config(BASE), tricks="mixup", direction="max", metric="val_nll").direction == "maximize"
    with pytest.raises(ValueError, match="direction must be 'max' or 'min' .*got 'up'"):
        spec_from_config(load_config(BASE), tricks="mixup", direction="up")
    # a trick that lowers NLL helps; the table says which way is better
    sp = spec("mixup", metric="val_nll")
    ref = {s: 0.9 + 0.01 * math.sin(s) for s in range(5)}
    rows = fast_rows(data(sp, [ref, {s: v - 0.1 + 0.002 * (s % 2) for s, v in ref.items()}]))
    assert rows[1]["verdict"] == "helps"
    assert "direction: lower is better (val_nll)" in report.table_text(rows, "val_nll")


def test_cli_takes_direction():
    from trickbag.cli import build_parser

    args = build_parser().parse_args(["ablate", "--config", "c.yaml", "--direction", "min"])
    assert args.direction == "min"


# ---- 2. tiny samples, quantised metrics, the sign-flip test ------------------------------------

def test_sign_flip_p_is_the_exact_permutation_p_and_never_below_its_floor():
    from trickbag.ablation.stats import sign_flip_p

    rng = np.random.default_rng(1)
    for n in (2, 3, 5, 7):
        for _ in range(20):
            d = rng.normal(0.3, 1.0, n)
            sums = [abs(sum(s * x for s, x in zip(signs, d))) for signs in itertools.product((-1, 1), repeat=n)]
            brute = sum(v >= abs(d.sum()) - 1e-12 for v in sums) / 2**n
            p = sign_flip_p(d)
            assert p == pytest.approx(brute) and p >= 2.0 ** (1 - n)
    assert sign_flip_p([0.01] * 5) == pytest.approx(2.0 ** -4)
    big = sign_flip_p(rng.normal(0, 1, 30))  # Monte Carlo above 16, seeded: the same twice
    assert big == sign_flip_p(rng.normal(0, 1, 30)) or 0 < big <= 1


def test_two_seeds_give_no_verdict_and_quantised_nulls_no_false_verdicts(fast_rows):
    """Under the null, accuracy rounded to 1/1000, five tricks at two seeds: the old report called 20%
    of replicates' arms helps or hurts (sd ~1e-17 from equal differences); now none, and at five
    seeds the family-wise false-verdict rate stays near 0.05."""
    rng = np.random.default_rng(0)
    for seeds, limit in ((2, 0.0), (5, 0.1)):
        sp = spec(seeds=seeds)
        false = 0
        reps = 150
        for _ in range(reps):
            # one shared seed effect per seed (paired), tiny arm noise, then quantised to 1/1000
            seed_effect = rng.normal(0.8, 0.01, seeds)
            values = [{s: round(float(seed_effect[s] + rng.normal(0, 0.0006)), 3) for s in range(seeds)}
                      for _ in sp.arms]
            rows = fast_rows(data(sp, values))
            false += any(r["verdict"] in ("helps", "hurts") for r in rows[1:])
        assert false / reps <= limit
    rows = fast_rows(data(spec(seeds=2), [{0: 0.800, 1: 0.810}] + [{0: 0.812, 1: 0.822}] * 5))
    assert {r["verdict"] for r in rows[1:]} == {"no verdict below 3 seeds (has 2)"}
    assert "p(sign)" in report.table_text(rows, "val_acc")


def test_an_sd_below_the_resolution_is_undecidable(fast_rows):
    ref = {s: 0.8 + s / 1000 for s in range(5)}
    same_shift = {s: v + 0.012 for s, v in ref.items()}  # equal differences: sd is float rounding
    rows = fast_rows(data(spec("mixup"), [ref, same_shift]))
    assert rows[1]["resolution"] == pytest.approx(1 / 1000)
    assert rows[1]["verdict"] == "undecidable: sd below the metric's resolution 0.001"
    assert report.bar_color(rows[1], True) == report.GREY
    identical = fast_rows(data(spec("mixup"), [ref, dict(ref)]))
    assert identical[1]["verdict"] == "no evidence at 5 seeds"  # the arm equals the reference: no effect seen
    r = paired(ref, same_shift)
    assert verdict(r, 0.0, maximize=True, resolution=1e-3).startswith("undecidable")


# ---- 3. failed trials --------------------------------------------------------------------------

def test_failed_trials_show_in_every_row_and_block_helps(fast_rows):
    ref = {s: 0.60 + 0.004 * math.sin(s) for s in range(5)}
    good = {s: ref[s] + 0.05 + 0.002 * (s % 2) for s in (0, 1, 2)}  # better on its 3 survivors
    fails = [[], ["seed 3: train_loss is not finite (diverged)", "seed 4: train_loss is not finite"]]
    sp = spec("mixup")
    rows = fast_rows(data(sp, [ref, good], fails))
    assert rows[1]["failed"] == 2 and rows[1]["tried"] == 5
    assert rows[1]["verdict"] == "no verdict: 2 of 5 seeds failed"
    text = report.table_text(rows, "val_acc")
    assert " 0/5 " in text.splitlines()[1] and " 2/5 " in text.splitlines()[2]
    # intention to treat: the failures score the worst value seen, and the arm is compared on 5 seeds
    itt = fast_rows(data(spec("mixup", failures="worst"), [ref, good], fails))
    assert itt[1]["n"] == 5 and itt[1]["verdict"] in ("hurts", "no evidence at 5 seeds")
    assert "intention to treat" in report.table_text(itt, "val_acc")
    assert spec("mixup", failures="worst").plan_id() == spec("mixup").plan_id()  # analysis, not the plan
    with pytest.raises(ValueError, match="failures must be one of exclude, worst, got 'drop'"):
        spec("mixup", failures="drop")


# ---- 4. data variance ----------------------------------------------------------------------------

def test_vary_data_draws_each_seeds_data_paired_across_arms():
    from trickbag.train.build import load_splits

    fixed, varied = spec("mixup"), spec("mixup", vary_data=True)
    assert fixed.to_dict() == {k: v for k, v in varied.to_dict().items() if k != "vary_data"}
    assert fixed.plan_id() != varied.plan_id()
    for a in varied.arms:
        assert [varied.arm_config(a, i)["data"]["split_seed"] for i in range(3)] == [0, 1, 2]
        assert {fixed.arm_config(a, i)["data"]["split_seed"] for i in range(3)} == {0}

    def splits(sp, arm, i):
        return load_splits(load_config(sp.arm_config(sp.arms[arm], i)))

    a0, b0, a1 = splits(varied, 0, 0), splits(varied, 1, 0), splits(varied, 0, 1)
    assert all(x.train.targets.equal(y.train.targets) and x.val.inputs.equal(y.val.inputs) for x, y in [(a0, b0)])
    assert not a0.val.inputs.equal(a1.val.inputs) and not a0.train.targets.equal(a1.train.targets)
    explicit = AblationSpec(load_config({**BASE, "data": {**BASE["data"], "label_noise": {"rate": 0.2, "seed": 7}}}),
                            parse_tricks("mixup"), 3, vary_data=True)
    assert explicit.arm_config(explicit.arms[1], 2)["data"]["label_noise"] == {"rate": 0.2, "seed": 9}
    assert spec_from_config(load_config({**BASE, "ablation": {"tricks": "mixup", "vary_data": True}})).vary_data


def test_the_report_says_which_variance_the_intervals_cover(fast_rows):
    ref = {s: 0.8 + 0.01 * math.cos(s) for s in range(5)}
    arm = {s: v + 0.01 * math.sin(3 * s) for s, v in ref.items()}
    on = " ".join(report.table_text(fast_rows(data(spec("mixup", vary_data=True), [ref, arm])), "val_acc").split())
    off = " ".join(report.table_text(fast_rows(data(spec("mixup"), [ref, arm])), "val_acc").split())
    assert "validation split, training subset and label-noise draw (ablation.vary_data)" in on
    assert "not the data draw" in off


# ---- 5. skew: coverage, outlying seeds, the two tests ----------------------------------------------

def test_intervals_cover_under_normal_noise(fast_rows):
    rng = np.random.default_rng(3)
    sp = spec("mixup,cutout,ema")
    truth = [0.0, 0.02, -0.01, 0.0]
    covered, reps = 0, 300
    for _ in range(reps):
        seed = rng.normal(0.7, 0.02, 5)
        values = [{s: float(seed[s] + t + rng.normal(0, 0.006)) for s in range(5)} for t in truth]
        rows = fast_rows(data(sp, values))
        covered += all(r["low"] <= t - truth[0] <= r["high"] for r, t in zip(rows[1:], truth[1:]))
    # simultaneous 95%: all three intervals at once (Bonferroni: at least 0.95), less 3 binomial sds
    assert covered / reps >= 0.95 - 3 * math.sqrt(0.05 * 0.95 / reps)


def test_skewed_differences_name_the_outlying_seed_and_mark_the_tests_disagreeing(fast_rows):
    """A baseline that collapses on 20% of seeds skews the paired differences: when a collapse is seen,
    the report names that seed."""
    rng = np.random.default_rng(4)
    sp = spec("mixup")
    named = seen = covered = 0
    missed_unflagged = 0
    reps = 200
    for _ in range(reps):
        collapse = rng.random(5) < 0.2
        ref = {s: float(0.8 + rng.normal(0, 0.004) - 0.2 * collapse[s]) for s in range(5)}
        arm = {s: float(0.8 + rng.normal(0, 0.004)) for s in range(5)}
        row = fast_rows(data(sp, [ref, arm]))[1]
        hit = row["low"] <= 0.2 * 0.2 <= row["high"]  # the true mean difference: 0.2 x the collapse
        covered += hit
        if collapse.sum() == 1:
            seen += 1
            named += row["outliers"] == [int(np.flatnonzero(collapse)[0])]
            missed_unflagged += not hit and not row["outliers"]
    assert seen > 40 and named / seen >= 0.9
    # skew breaks the t interval's coverage (the issue measured 66% at 5 seeds); the report cannot
    # fix that, but a miss caused by one observed collapse is flagged
    assert covered / reps < 0.8 and missed_unflagged <= 0.1 * seen
    # eight seeds: all positive with one huge (skewed): the sign-flip test rejects, the t-test does not
    ref = {s: 0.5 for s in range(8)}
    arm = {s: 0.5 + (0.3 if s == 7 else 0.01 + 0.001 * s) for s in range(8)}
    row = fast_rows(data(spec("mixup", seeds=8), [ref, arm]))[1]
    assert row["disagree"] == "sign-flip only" and row["p_sign"] == pytest.approx(2 / 256)
    assert "sign-flip only (t vs sign-flip)" in report.table_text([fast_rows(data(spec("mixup", seeds=8), [ref, arm]))[0], row], "val_acc")


def test_effects_chart_has_the_strip_of_paired_differences(tmp_path, fast_rows):
    from PIL import Image

    ref = {s: 0.8 + 0.003 * s for s in range(5)}
    rows = fast_rows(data(spec("mixup"), [ref, {s: v + (0.05 if s != 3 else -0.1) for s, v in ref.items()}]))
    report._plot_effects(rows, spec("mixup"), tmp_path / "effects.png")
    wide = Image.open(tmp_path / "effects.png").size[0]
    assert wide > 1200  # two panels: effects and, beside them, each seed's difference
    px = np.asarray(Image.open(tmp_path / "effects.png").convert("RGB"))[:, wide // 2:].reshape(-1, 3).astype(int)
    red = np.array([0xD1, 0x24, 0x2F])
    assert (np.abs(px - red).max(axis=1) < 40).sum() > 30  # the outlying seed's red point and its label


# ---- 6 and 7. no post-hoc seed counts; MDE at an upper limit of the sd ------------------------------

def test_no_seeds80_and_mde_holds_its_power_on_average():
    """At the observed sd, an effect of MDE80 was detected 62-69% of the time at 3 and 5 seeds; at the
    80% upper confidence limit of the sd, at least 80% on average."""
    rng = np.random.default_rng(5)
    for n in (3, 5):
        sp = spec("mixup", seeds=n)
        c = t_critical_value(n, m=1)
        powers = []
        for _ in range(60):
            ref = {s: 0.0 for s in range(n)}
            rows = report.rows_of(data(sp, [ref, {s: float(rng.normal(0, 1)) for s in range(n)}]))
            powers.append(t_power(rows[1]["mde"] / 1.0, n, c))  # true sd of the differences: 1
        assert np.mean(powers) >= 0.8
        from trickbag.ablation.stats import sd_upper_limit

        assert rows[1]["mde"] == pytest.approx(min_detectable_effect(n, sd_upper_limit(rows[1]["sd"], n)))
        text = report.table_text(rows, "val_acc")
        assert "seeds80" not in text and "80% upper confidence limit" in " ".join(text.split())


# ---- 8. adaptive mode --------------------------------------------------------------------------------

def test_adaptive_report_has_no_raw_interval_and_says_early_stops_are_biased(tmp_path):
    import json

    sp = spec("mixup,cutout", seeds="auto", budget=40)
    rng = np.random.default_rng(6)
    values = [{s: float(0.8 + rng.normal(0, 0.01)) for s in range(6)} for _ in sp.arms]
    d = data(sp, values)
    d.update(meta={"provenance": {}}, counts={"planned": 18, "done": 18}, started=None, finished=None)
    (tmp_path / "results.json").write_text(json.dumps(report._results_payload(d), default=str))
    report.render_results(tmp_path)
    md = " ".join((tmp_path / "report.md").read_text().split())
    assert "raw 95% CI" not in md and "biased away from zero" in md
    fixed = data(spec("mixup,cutout", seeds=6), values)
    fixed.update(meta={"provenance": {}}, counts={"planned": 18, "done": 18}, started=None, finished=None)
    (tmp_path / "results.json").write_text(json.dumps(report._results_payload(fixed), default=str))
    report.render_results(tmp_path)
    assert "raw 95% CI" in (tmp_path / "report.md").read_text()


# ---- 9. one multiplicity rule --------------------------------------------------------------------

def test_the_exported_verdict_with_bonferroni_is_the_reports_rule(fast_rows):
    from trickbag import ablation

    assert ablation.bonferroni is bonferroni and ablation.verdict is verdict
    rng = np.random.default_rng(7)
    sp = spec()
    for _ in range(100):
        n = int(rng.integers(2, 7))
        sp = spec(seeds=n)
        seed = rng.normal(0.7, 0.02, n)
        values = [{s: float(seed[s] + e + rng.normal(0, 0.01)) for s in range(n)}
                  for e in [0.0, *rng.choice([0.0, 0.02, -0.02], 5)]]
        rows = fast_rows(data(sp, values))
        results = [paired(values[0], v) for v in values[1:]]
        adjusted = bonferroni([r.p_value for r in results])
        assert [verdict(r, p, maximize=True) for r, p in zip(results, adjusted)] == [r["verdict"] for r in rows[1:]]


def test_long_tailed_report_uses_the_same_rule():
    from pathlib import Path

    root = Path(__file__).parents[2]
    md = (root / "docs" / "results" / "long_tailed" / "report.md").read_text()
    assert "p (Holm)" not in md and "simultaneous 95% CI (Bonferroni)" in md and "p (Bonferroni)" in md


def test_a_diverging_arm_shows_its_failures_end_to_end(tmp_path):
    """A learning rate of 1e6 diverges on every seed: the row says 3/3 failed, the verdict is not
    'helps', and the table prints it."""
    from trickbag.ablation import run

    cfg = {**BASE, "model": {"name": "mlp", "hidden": [8]}, "train": {**BASE["train"], "nan_guard": True}}
    summary = run(cfg, "sgd:lr=1.0e6", seeds=3, out=tmp_path / "out", progress=False)
    row = summary["rows"][1]
    assert (row["failed"], row["tried"]) == (3, 3) and row["verdict"] != "helps"
    table = (tmp_path / "out" / "table.txt").read_text()
    assert " 3/3 " in table and " 0/3 " in table
    assert "Failed trials" in (tmp_path / "out" / "report.md").read_text()
