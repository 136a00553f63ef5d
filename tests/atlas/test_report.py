"""The atlas report: results.json round-trips, the table is sorted by the pooled effect, n/a cells
stay empty in the heat map, the claims of the method cards are shown, the PNGs are real plots."""

from __future__ import annotations

import json
from html import escape
import math

import numpy as np
import pytest

from trickbag.atlas.report import claim_of, heatmap_data, render_results, summary_table, write_report

TASKS = ["fmnist_clean", "fmnist_noisy40", "fmnist_longtail", "fmnist_lowdata", "mr_text", "cifar10_subset"]
TRICKS = ["label_smoothing", "mixup", "cutmix", "cutout", "flooding", "warmup", "cosine_restarts", "radam",
          "lookahead", "gradient_clipping", "gradient_centralization", "dropout", "ema", "swa", "blurpool"]
IMAGE_ONLY = {"mixup", "cutmix", "cutout", "blurpool"}


def synthetic_cells(seed: int = 0, seeds: int = 5):
    """6 tasks x 15 tricks of made-up accuracies: image-only tricks n/a on the text task, one failed
    cell, a trick with one true effect everywhere and one whose effect varies by task."""
    rng = np.random.default_rng(seed)
    cells = []
    true = {t: rng.normal(0.0, 0.01) for t in TRICKS}
    true["ema"] = 0.01  # the same effect on every task
    for k, task in enumerate(TASKS):
        base_acc = 0.7 + 0.04 * k
        noise = 0.004 + 0.002 * k
        baseline = {s: base_acc + rng.normal(0, noise) for s in range(seeds)}
        for trick in TRICKS:
            cell = {"task": task, "trick": trick, "metric": "val_acc", "direction": "maximize",
                    "seeds": list(range(seeds)), "baseline": dict(baseline), "treated": {}, "failed_seeds": [],
                    "baseline_sd": None, "params": {"alpha": 0.2} if trick == "mixup" else {}}
            if task == "mr_text" and trick in IMAGE_ONLY:
                cell["status"] = "n/a"
            elif (task, trick) == ("cifar10_subset", "radam"):
                cell.update(status="failed", failed_seeds=list(range(seeds)))
            else:
                effect = true[trick] + (rng.normal(0, 0.01) if trick == "dropout" else 0.0)
                cell["status"] = "ok"
                cell["treated"] = {s: v + effect + rng.normal(0, noise / 3) for s, v in baseline.items()}
            cells.append(cell)
    return cells


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One synthetic atlas report (rendering takes seconds: the tests share it)."""
    out = tmp_path_factory.mktemp("atlas")
    results = write_report(out, synthetic_cells(), suite_name="synthetic", command="trickbag atlas ...",
                           wall_time_s=123.0, meta={"trickbag": "0.1.0"})
    return out, results


def test_results_json_round_trips_and_rerenders_identically(report, tmp_path):
    out, results = report
    saved = json.loads((out / "results.json").read_text())
    assert saved == results
    for name in ("results.json", "report.md"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    assert render_results(tmp_path) == results
    assert (tmp_path / "report.md").read_text() == (out / "report.md").read_text()
    # seed keys as strings (a JSON round trip) are accepted as input
    cells = [dict(c, baseline={str(s): v for s, v in c["baseline"].items()}) for c in synthetic_cells()]
    from trickbag.atlas import report as module

    stats = module._clean_cells(cells)
    assert all(isinstance(s, int) for c in stats for s in c["baseline"])
    assert stats == module._clean_cells(synthetic_cells())


def test_table_sorted_by_pooled_effect_and_counts_add_up(report):
    results = report[1]
    est = [r["estimate"] for r in results["pooled"] if r["k"] >= 2]
    assert est == sorted(est, reverse=True) and len(est) == len(TRICKS)
    table = summary_table(results).splitlines()
    assert [line.split("|")[1].strip() for line in table[2:]] == results["tricks"]
    for r in results["pooled"]:
        assert r["helps"] + r["hurts"] + r["undecided"] == r["k"]
        assert r["k"] + len(r["n/a"]) + len(r["failed"]) + len(r["not_pooled"]) == len(TASKS)
    ema = next(r for r in results["pooled"] if r["trick"] == "ema")
    assert ema["ci_low"] > 0 and ema["pi_low"] <= ema["ci_low"]
    radam = next(r for r in results["pooled"] if r["trick"] == "radam")
    assert radam["failed"] == ["cifar10_subset"] and radam["k"] == 5
    assert results["settings"]["scale"] == "rer"  # accuracies in [0, 1]: relative error reduction


def test_na_cells_are_empty_in_the_heat_map(report):
    results = report[1]
    tricks, tasks, values, verdicts = heatmap_data(results)
    j = tasks.index("mr_text")
    for trick in IMAGE_ONLY:
        i = tricks.index(trick)
        assert math.isnan(values[i, j]) and verdicts[i][j] == ""
    assert np.isfinite(values[tricks.index("ema"), j])
    assert math.isnan(values[tricks.index("radam"), tasks.index("cifar10_subset")])
    assert verdicts[tricks.index("radam")][tasks.index("cifar10_subset")] == "failed"


def test_cell_verdicts_are_bonferroni_over_the_task(report, tmp_path, monkeypatch):
    from trickbag.ablation.stats import paired

    results = report[1]
    cell = next(c for c in results["cells"] if (c["task"], c["trick"]) == ("fmnist_clean", "ema"))
    assert cell["m"] == 15  # every trick measured on that task
    ref = paired({int(s): v for s, v in cell["baseline"].items()}, {int(s): v for s, v in cell["treated"].items()},
                 confidence=1 - 0.05 / 15)
    assert (cell["low"], cell["high"]) == pytest.approx((ref.ci_low, ref.ci_high))
    from trickbag.atlas import report as module

    monkeypatch.setattr(module, "available", lambda name: False)  # no plots: the numbers are the point here
    atlas = write_report(tmp_path / "a", synthetic_cells(), suite_name="synthetic", family="atlas")
    assert "matplotlib is not installed" in (tmp_path / "a" / "report.md").read_text()
    assert {c["m"] for c in atlas["cells"] if c["status"] == "ok"} == {sum(c["status"] == "ok" for c in atlas["cells"])}


ATLAS_TRICKS = ["label_smoothing", "mixup", "cutmix", "cutout", "flooding", "warmup", "cosine_restarts", "radam",
                "lookahead", "gradient_clipping", "gradient_centralization", "dropout", "ema", "swa", "mish", "swish",
                "blurpool", "focal_loss", "class_balanced", "tta"]


@pytest.mark.parametrize("trick", ATLAS_TRICKS)
def test_every_atlas_trick_has_a_claim_on_its_card(trick):
    claim = claim_of(trick)
    assert claim and len(claim) > 40 and "\n" not in claim


def test_claims_are_found_under_parameterised_labels():
    assert claim_of("mixup:alpha=0.2") == claim_of("mixup") and claim_of("Mish") == claim_of("activations")
    assert claim_of("not_a_trick") is None and claim_of("sgd") is None  # no claim on that card


def test_the_report_shows_the_claims_and_the_scale(report):
    out = report[0]
    md = (out / "report.md").read_text()
    for trick in ("label_smoothing", "mixup", "ema", "blurpool", "warmup", "cosine_restarts"):
        claim = claim_of(trick)
        assert claim and claim in md, trick
    assert "relative error reduction" in md and "![" in md and "heatmap.png" in md and "forest.png" in md
    html = (out / "report.html").read_text()
    assert '<img src="heatmap.png"' in html and escape(claim_of("mixup")) in html


def test_pngs_exist_and_are_plots(report):
    from matplotlib import image

    def near(px, hex_color, tol=40):
        rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])
        return int((np.abs(px - rgb).max(axis=-1) < tol).sum())

    heat = (image.imread(report[0] / "heatmap.png")[..., :3] * 255).astype(int)
    assert heat.shape[0] > 600 and heat.shape[1] > 800
    assert ((heat.max(axis=2) - heat.min(axis=2)) > 80).mean() > 0.15  # coloured cells, not a blank canvas
    assert near(heat, "#f0f0f0", 4) > 1000  # the grey n/a cells
    forest = (image.imread(report[0] / "forest.png")[..., :3] * 255).astype(int)
    assert forest.shape[0] > 1000 and forest.shape[1] > 1000
    # per-task squares and whiskers by verdict, the pooled diamonds, the prediction intervals
    assert near(forest, "#1a7f37") > 300 and near(forest, "#d1242f") > 300 and near(forest, "#57606a") > 300
    assert near(forest, "#000000", 30) > 3000 and near(forest, "#6fa6e8", 40) > 300


def test_different_metrics_pool_only_on_a_common_scale(tmp_path, monkeypatch):
    from trickbag.atlas import report as module

    monkeypatch.setattr(module, "available", lambda name: False)
    cells = synthetic_cells()
    for c in cells:
        if c["task"] == "mr_text":  # a loss on one task: no longer accuracy-type everywhere
            c.update(metric="val_loss", direction="minimize",
                     baseline={s: 2 - v for s, v in c["baseline"].items()},
                     treated={s: 2 - v for s, v in c["treated"].items()})
    with pytest.raises(ValueError, match="scale 'raw'.*several metrics"):
        write_report(tmp_path, cells, suite_name="mixed", scale="raw")
    with pytest.raises(ValueError, match="scale 'rer' needs accuracy-type.*mr_text"):
        write_report(tmp_path, cells, suite_name="mixed", scale="rer", metric_units={"val_loss": "nats"})
    results = write_report(tmp_path, cells, suite_name="mixed")
    assert results["settings"]["scale"] == "standardised"
    md = (tmp_path / "report.md").read_text()
    assert "different metrics (val_acc, val_loss)" in md and "never in their own units" in md


def test_bad_cells_are_one_line_errors(tmp_path):
    cells = synthetic_cells()
    cells[0]["status"] = "skipped"
    with pytest.raises(ValueError, match=r"status must be one of .*'skipped'"):
        write_report(tmp_path, cells, suite_name="x")
    cells = synthetic_cells()
    cells[1]["metric"] = "val_loss"
    with pytest.raises(ValueError, match="task 'fmnist_clean': its cells disagree on the metric"):
        write_report(tmp_path, cells, suite_name="x")
    with pytest.raises(ValueError, match="family must be one of"):
        write_report(tmp_path, synthetic_cells(), suite_name="x", family="trick")


def test_forest_intervals_are_the_verdicts_intervals_on_the_common_scale(report):
    """The forest plot's colours come from the cells' verdicts: the interval drawn for each task must
    be the one the verdict was read off (so they cannot disagree), scaled to the common scale."""
    from trickbag.atlas.meta import cell_effect, scale_factor

    for c in report[1]["cells"]:
        if c["status"] != "ok":
            assert c["scaled"] is None and c["scaled_low"] is None
            continue
        low, high = c["scaled_low"], c["scaled_high"]
        assert low <= c["scaled"] <= high
        assert c["verdict"] == ("helps" if low > 0 else "hurts" if high < 0 else "undecided")
        b, t = ({int(s): v for s, v in c[k].items()} for k in ("baseline", "treated"))
        f = scale_factor(b, t, direction="maximize", scale="rer")
        assert c["scaled"] == pytest.approx(f * c["effect"]) == pytest.approx(
            cell_effect(b, t, direction="maximize", scale="rer")[0])
        assert (low, high) == pytest.approx((f * c["low"], f * c["high"]))


def test_the_suites_cards_units_reasons_and_abouts_reach_the_report(tmp_path, monkeypatch):
    from trickbag.atlas import report as module

    monkeypatch.setattr(module, "available", lambda name: False)
    cells = synthetic_cells()
    for c in cells:
        c["trick"] = {"warmup": "ramp", "mixup": "mix"}.get(c["trick"], c["trick"])  # suite names, not card names
        c["params"] = {"mixup": {"alpha": 0.2}} if c["trick"] == "mix" else {}
        if c["status"] == "n/a":
            c["reason"] = "image-only trick on text"
    meta = {"tasks": {"fmnist_clean": {"about": "SGD at the book's learning rate"}},
            "tricks": {"ramp": {"card": "linear_warmup", "about": "5% of the steps"}, "mix": {"card": "mixup"}},
            "provenance": {"git": "abc1234"}}
    results = write_report(tmp_path, cells, suite_name="s", meta=meta,
                           metric_units={"fmnist_clean": "fraction", "val_acc": "percent-points"})
    pooled = {r["trick"]: r for r in results["pooled"]}
    assert pooled["ramp"]["claimed"] == claim_of("linear_warmup") and pooled["ramp"]["catalog"] == "linear_warmup"
    assert pooled["mix"]["claimed"] == claim_of("mixup")
    units = {t["task"]: t["units"] for t in results["tasks"]}
    assert units["fmnist_clean"] == "fraction" and units["mr_text"] == "percent-points"  # by task, else by metric
    assert results["settings"]["scale"] == "standardised"  # not every task is accuracy-type now
    md = (tmp_path / "report.md").read_text()
    assert "n/a: image-only trick on text" in md and "SGD at the book's learning rate" in md
    assert "ramp (card: linear_warmup): 5% of the steps" in md and "mix (card: mixup): mixup(alpha=0.2)" in md
    assert "- git: abc1234" in md


def test_a_constant_relative_error_reduction_is_recovered_end_to_end(tmp_path, monkeypatch):
    """Tasks with different baselines, one trick that removes 10% of each task's error: the report
    pools it to about +10% with tau near 0, and its prediction interval holds 10%."""
    from trickbag.atlas import report as module

    monkeypatch.setattr(module, "available", lambda name: False)
    rng = np.random.default_rng(11)
    cells = []
    for k, acc in enumerate([0.62, 0.71, 0.80, 0.86, 0.91, 0.95]):
        err = 1 - acc
        base = {s: acc + rng.normal(0, 0.1 * err) for s in range(8)}
        treated = {s: v + 0.1 * (1 - v) + rng.normal(0, 0.005 * err) for s, v in base.items()}
        cells.append({"task": f"t{k}", "trick": "trick", "metric": "acc", "direction": "maximize", "status": "ok",
                      "seeds": list(range(8)), "baseline": base, "treated": treated, "failed_seeds": [],
                      "baseline_sd": None, "params": {}})
    r = write_report(tmp_path, cells, suite_name="constant")["pooled"][0]
    assert r["k"] == 6 and abs(r["estimate"] - 0.1) < 0.005 and r["tau"] < 0.005
    assert r["ci_low"] < 0.1 < r["ci_high"] and r["pi_low"] < 0.1 < r["pi_high"] and r["helps"] == 6
