"""The committed atlas: the README's table and wall time are docs/results/atlas/results.json's, and
the committed folder reads back the cells it was reported from."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results" / "atlas"


def _script():
    spec = importlib.util.spec_from_file_location("make_readme_atlas", ROOT / "docs" / "make_readme_atlas.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_table_is_generated_from_the_committed_results():
    script = _script()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert script.current(text) == script.block(), "run python docs/make_readme_atlas.py"


def test_readme_quotes_the_measured_wall_time_and_the_suite_command():
    results = json.loads((RESULTS / "results.json").read_text())
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    minutes = f"{results['wall_time_s'] / 60:.1f} minutes"
    assert f"It took {minutes} on 2 shared CPU cores" in text
    assert minutes in (RESULTS / "README.md").read_text()
    assert results["wall_time_s"] <= 90 * 60  # the bound
    assert results["command"] in text
    pooled = {r["trick"]: r for r in results["pooled"]}
    assert len(results["tasks"]) >= 6 and len(pooled) >= 12


def test_the_committed_folder_reads_back_its_cells(monkeypatch, tmp_path):
    import shutil

    from trickbag.atlas import collect_cells

    folder = tmp_path / "atlas"  # a copy: reading takes a lock file beside the database
    shutil.copytree(RESULTS, folder)
    monkeypatch.chdir(ROOT)  # the suite's task configs are relative to the repository root
    _, cells = collect_cells(folder)
    assert json.loads(json.dumps(cells, default=str)) == json.loads((RESULTS / "cells.json").read_text())
    assert not any(str(ROOT) in p.read_text(errors="ignore") for p in RESULTS.glob("*.json")), os.sep


def test_trickbag_report_re_renders_the_committed_atlas(monkeypatch, tmp_path):
    import shutil

    from trickbag.cli import main

    folder = tmp_path / "atlas"
    shutil.copytree(RESULTS, folder)
    (folder / "results.json").unlink()
    monkeypatch.chdir(ROOT)
    assert main(["report", str(folder)]) == 0
    again, committed = (json.loads((f / "results.json").read_text()) for f in (folder, RESULTS))
    for key in ("pooled", "cells", "tasks", "tricks", "settings", "command", "wall_time_s"):
        assert again[key] == committed[key], key
