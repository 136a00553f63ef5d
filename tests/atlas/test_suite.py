"""Reading an atlas suite: every bad name is one line naming it and what is valid."""

from __future__ import annotations

import pytest
import yaml

from trickbag.atlas import load_suite
from trickbag.cli import main

BASE = {
    "data": {"name": "synthetic", "options": {"num_train": 96, "num_test": 32, "shape": [1, 8, 8], "num_classes": 3},
             "batch_size": 32},
    "model": {"name": "small_cnn", "width": 4},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "train": {"epochs": 1, "threads": 1},
}


def suite(tmp_path, **changes):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    raw = {"seeds": 2, "metric": "test_acc",
           "tasks": {"img": {"config": "base.yaml"}, "flat": {"config": "base.yaml", "overrides": ["model.name=mlp"]}},
           "tricks": {"label_smoothing": {"tricks": [{"label_smoothing": {"smoothing": 0.1}}]},
                      "ema": {"tricks": ["ema"], "tasks": ["img"]}}}
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_good_suite_reads_back_with_its_defaults(tmp_path):
    s = load_suite(suite(tmp_path))
    assert sorted(t.name for t in s.tasks) == ["flat", "img"] and s.seeds == 2
    assert s.task("flat").config.model["name"] == "mlp"
    assert all(t.direction == "maximize" and t.metric == "test_acc" for t in s.tasks)
    ema = next(k for k in s.tricks if k.name == "ema")
    assert ema.applies("img") and not ema.applies("flat")
    assert s.plan_id() == load_suite(suite(tmp_path)).plan_id()
    assert load_suite(suite(tmp_path, metric="test_loss")).tasks[0].direction == "minimize"  # trickbag.loop.metric_mode


@pytest.mark.parametrize("changes, message", [
    ({"seed": 3}, "unknown key in the suite 'seed'; did you mean 'seeds'"),
    ({"tasks": {"img": {"config": "base.yaml", "metrik": "x"}}}, "unknown key in task 'img' 'metrik'; did you mean 'metric'"),
    ({"tricks": {"ls": {"tricks": ["label_smothing"]}}}, "unknown trick 'label_smothing'; did you mean 'label_smoothing'"),
    ({"tricks": {"ema": {"tricks": ["ema"], "tasks": ["imgg"]}}}, "unknown task in trick 'ema' 'imgg'; did you mean 'img'"),
    ({"tricks": {"ema": {"trick": ["ema"]}}}, "unknown key in trick 'ema' 'trick'; did you mean 'tricks'"),
    ({"tricks": {"ema": {"tricks": ["ema"], "per_task": {"imgx": {}}}}}, "unknown key in trick 'ema': per_task 'imgx'"),
    ({"tricks": {"nothing": {}}}, "trick 'nothing' adds nothing"),
    ({"tasks": {"img": {"config": "missing.yaml"}}}, "task 'img': config file not found"),
    ({"tasks": {"img": {"config": "base.yaml", "overrides": ["train.epoch=3"]}}}, "task 'img': unknown"),
    ({"seeds": 0}, "seeds must be an integer >= 1, got 0"),
    ({"seeds": "auto"}, "seeds: auto needs a budget"),
    ({"tricks": None}, "the suite names no tricks"),
    ({"tasks": {"img": {"config": "base.yaml", "direction": "up"}}}, "direction must be 'maximize' or 'minimize'"),
])
def test_bad_suites_fail_in_one_line(tmp_path, changes, message):
    with pytest.raises(ValueError) as info:
        load_suite(suite(tmp_path, **changes))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_cli_reports_a_bad_suite_in_one_line(tmp_path, capsys):
    path = suite(tmp_path, tricks={"ls": {"tricks": ["mixpu"]}})
    assert main(["atlas", "--suite", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown trick 'mixpu'; did you mean 'mixup'" in err[0]
    assert not (tmp_path / "out").exists()


def test_the_committed_suite_reads(tmp_path):
    from pathlib import Path

    s = load_suite(Path(__file__).resolve().parents[2] / "configs" / "atlas_cpu.yaml")
    assert len(s.tasks) >= 6 and len(s.tricks) >= 12
    assert {t.metric for t in s.tasks} == {"test_acc"}
    assert s.task("mr_textcnn").fold_key == "data.options.fold"
