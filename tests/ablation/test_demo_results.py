"""The committed demo results: the README shows the demo's table as printed and the three-run summary,
the results were made with the demo config as it is now, and three runs with different base seeds
(training and data) never contradict each other."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
_spec = importlib.util.spec_from_file_location("make_readme_demo", ROOT / "docs" / "make_readme_demo.py")
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)


def test_readme_table_is_the_committed_demo_table():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert demo.block(demo.table()) in text, "README.md's demo table drifted: run python docs/make_readme_demo.py"
    assert demo.runs_block() in text, "README.md's three-run summary drifted: run python docs/make_readme_demo.py"


def test_committed_results_are_current_and_agree():
    assert demo.problems() == []
    verdicts = demo.verdicts(0)
    assert "helps" in verdicts.values()  # the demo decides something
    assert all(v == "helps" or v == "hurts" or v.startswith("no evidence") for v in verdicts.values())
    assert demo.contradictions() == []


def test_the_check_catches_drift(tmp_path, monkeypatch):
    # a README whose table lost a digit, and a demo config with another epoch count, are both caught
    readme = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = demo.table()
    first_number = next(tok for tok in table.split() if tok.startswith("0."))
    readme.write_text(text.replace(first_number, first_number[:-1] + "9", 1), encoding="utf-8")
    config = tmp_path / "demo.yaml"
    config.write_text((ROOT / "configs" / "fashion_mnist_demo.yaml").read_text().replace("epochs: 20", "epochs: 21"))
    monkeypatch.setattr(demo, "README", readme)
    monkeypatch.setattr(demo, "CONFIG", config)
    found = demo.problems()
    assert any("README.md's demo table differs" in p for p in found)
    runs = demo.runs_block()
    readme.write_text(text.replace(runs, runs.replace("helps", "hurts", 1)), encoding="utf-8")
    assert any("three-run summary differs" in p for p in demo.problems())
    assert sum("was run with another demo" in p and "'base'" in p for p in found) == 3


@pytest.mark.parametrize("seed", [0, 100, 200])
def test_results_hold_every_trial_and_no_local_detail(seed):
    path = ROOT / "docs" / "results" / "demo" / f"seed_{seed}" / "results.json"
    raw = json.loads(path.read_text())
    spec = raw["spec"]
    assert spec["base"]["train"]["seed"] == seed
    assert all(len(arm["values"]) == spec["seeds"] for arm in raw["arms"])
    assert raw["counts"]["done"] == len(raw["arms"]) * spec["seeds"]
    text = path.read_text()
    assert "sqlite" not in text and "/work/" not in text and "/home/" not in text
    assert set(raw["workers"]) <= {f"machine {i}" for i in range(1, 9)}
