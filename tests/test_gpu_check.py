"""benchmarks/gpu_check.py --quick: every section of the one GPU command runs (tiny, on the CPU)
and lands in the JSON and the Markdown summary; a section that runs out of time keeps what it
measured and the rest are recorded as skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
SECTIONS = ["tests", "speedrun_bf16", "speedrun_fp16", "optimizer", "monitor", "ablation"]


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict, str]:
    out = tmp_path / "out"
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # its work folder (decoded data, the ablation) goes here
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1500)
    results = json.loads((out / "gpu_check.json").read_text())
    return proc, results, (out / "gpu_check.md").read_text()


@pytest.mark.slow
def test_quick_mode_runs_every_section(tmp_path):
    proc, results, summary = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    s = results["sections"]
    assert list(s) == results["order"] == SECTIONS
    for name in SECTIONS:
        assert s[name]["status"] == "ok", (name, s[name].get("error"), s[name].get("log_tail", "")[-2000:])
    # the CUDA tests were found and collected (skipped without a GPU)
    counts = s["tests"]["runs"][0]["counts"]
    assert counts.get("skipped", 0) + counts.get("passed", 0) >= 20 and not counts.get("failed")
    assert not counts.get("errors")
    assert "tests/optim/test_radam.py" in s["tests"]["runs"][0]["command"]
    assert "tests/train/test_fp16_gradient_transforms.py" in s["tests"]["runs"][0]["command"]
    for precision in ("bf16", "fp16"):
        r = s[f"speedrun_{precision}"]
        assert r["precision"] == precision and r["seeds"] == 2 and len(r["runs"]) == 2
        assert 0.0 <= r["test_acc_mean"] <= 1.0 and r["train_s_median"] > 0 and r["compile_s"] >= 0
    assert s["speedrun_bf16"]["skipped_steps"] is None and s["speedrun_fp16"]["skipped_steps"] == [0, 0]
    assert set(s["optimizer"]["ms_per_step"]) >= {"torch RAdam (foreach)", "trickbag FusedRAdam"}
    assert set(s["monitor"]["overhead_pct"]) == {"none", "default"} and s["monitor"]["overhead_pct"]["none"] == 0
    abl = s["ablation"]
    assert abl["finished"] and abl["trials"]["complete"] == 4 and abl["wall_s"] > 0
    assert [r["label"] for r in abl["rows"]] == ["all", "without label_smoothing:smoothing=0.2"]
    # the summary: the table, one row per section, and the bf16/fp16 comparison
    assert "| section | status | seconds | result |" in summary
    for name in SECTIONS:
        assert f"| {name} | ok |" in summary
    assert "| bf16 | 2 |" in summary and "| fp16 | 2 |" in summary
    assert summary.strip() in proc.stdout  # printed last, too
    # what comes back from the GPU machine: at most eight files, no folders
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "gpu_check.json", "gpu_check.md", "gpu_check_ablation.md", "gpu_check_pytest.log"]


@pytest.mark.slow
def test_the_deadline_stops_a_section_and_skips_the_rest(tmp_path):
    # 2 arms x 200 seeds cannot finish in 40 s: the ablation is stopped and the optimizer skipped
    proc, results, summary = _run(tmp_path, "--sections", "ablation,optimizer", "--seeds", "200", "--deadline-s", "40")
    assert proc.returncode == 1
    s = results["sections"]
    assert s["ablation"]["status"] == "stopped (time budget): partial", (s["ablation"].get("error"),
                                                                        s["ablation"].get("log_tail", "")[-2000:])
    assert s["ablation"]["seeds"] == 200 and s["ablation"]["finished"] is False  # written before it was stopped
    assert 0 <= s["ablation"]["trials"].get("complete", 0) < 400
    assert s["optimizer"]["status"] == "skipped" and s["optimizer"]["reason"].startswith("deadline")
    assert results["elapsed_s"] < 40 + 15
    assert "| optimizer | skipped |" in summary and "| ablation | stopped (time budget): partial |" in summary
    assert not _processes_mentioning(str(tmp_path))  # the section's process is gone


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:  # ended meanwhile
            continue
    return found


def test_bad_arguments_are_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path), "--sections", "tests,gpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "unknown section(s) ['gpu']; valid: tests, speedrun_bf16" in proc.stderr
