"""The ablation runner end to end: paired seeds, reports, workers, SIGKILL and resume, PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from scipy import stats

from trickbag import _study
from trickbag.ablation import run
from subproc import resume_after_kill, subprocess_env
from trickbag.cli import main



BASE = {
    "data": {"name": "synthetic", "options": {"num_train": 480, "num_test": 64, "shape": [1, 8, 8], "num_classes": 3,
                                                "noise": 2.0}, "batch_size": 32},
    "model": {"name": "small_cnn", "width": 4},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "train": {"epochs": 2, "threads": 1},
}


def write(tmp_path, extra=None, name="base.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({**BASE, **(extra or {})}))
    return path


env = subprocess_env


def trials_by_slot(out: Path):
    import optuna

    meta = __import__("json").loads((out / "ablation.json").read_text())
    study = optuna.load_study(study_name=meta["study"], storage=_study.storage_url(meta["storage"], out))
    done = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    return study, {t.user_attrs["slot"]: t for t in done}, [t.user_attrs["slot"] for t in done]


def test_seeds_are_paired_and_the_report_is_complete(tmp_path):
    # flooding at b = 0 leaves every loss unchanged, so with paired seeds it must equal the baseline exactly
    summary = run(write(tmp_path), "flooding:b=0.0,mixup:alpha=0.4", seeds=2, out=tmp_path / "out", progress=False)
    rows = {r["label"]: r for r in summary["rows"]}
    assert set(rows) == {"baseline", "flooding:b=0.0", "mixup:alpha=0.4"}
    same = rows["flooding:b=0.0"]["paired"]
    assert same.n == 2 and same.mean == 0.0 and same.p_value == 1.0
    assert rows["mixup:alpha=0.4"]["paired"].n == 2
    assert rows["flooding:b=0.0"]["verdict"] == "no verdict below 3 seeds (has 2)"
    for r in summary["rows"][1:]:  # the interval drawn is at 0.05 / 2; two seeds give no verdict at all
        assert (r["low"], r["high"]) == pytest.approx(
            (r["paired"].mean - (r["paired"].mean - r["paired"].ci_low) * stats.t.ppf(1 - 0.0125, 1) / stats.t.ppf(0.975, 1),
             r["paired"].mean + (r["paired"].ci_high - r["paired"].mean) * stats.t.ppf(1 - 0.0125, 1) / stats.t.ppf(0.975, 1)))
        assert r["verdict"] == "no verdict below 3 seeds (has 2)" and r["failed"] == 0
        assert (r["mde"] > 0) == (r["paired"].std > 0)  # no seed noise in flooding at b = 0: any effect shows
    out = tmp_path / "out"
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for label in rows:
        assert label in md and label in html
    assert "simultaneous 95% CI" in md and "Bonferroni" in md and "MDE at 80% power" in md
    assert "Provenance" in md and "git" in md
    assert (out / "table.txt").read_text().startswith("arm ")
    from trickbag.ablation.report import load_results, rows_of, table_text

    again = rows_of(load_results(out / "results.json"))  # the saved numbers give the same table
    assert table_text(again, "val_acc") + "\n" == (out / "table.txt").read_text()
    from PIL import Image

    for png in ("effects.png", "curves_metric.png", "curves_train_loss.png"):
        with Image.open(out / png) as img:
            assert img.size[0] > 400 and img.size[1] > 150
    assert main(["report", str(out)]) == 0  # re-render from the storage


def test_two_local_workers_run_every_trial_once(tmp_path):
    out = tmp_path / "out"
    summary = run(write(tmp_path), "label_smoothing,cutout:size=3", seeds=2, workers=2, out=out, progress=False)
    assert summary["counts"] == {"planned": 6, "done": 6, "running": 0}
    study, by_slot, slots = trials_by_slot(out)
    assert sorted(slots) == sorted(by_slot) and len(slots) == 6
    assert len(study.get_trials()) == 6
    md = (out / "report.md").read_text()  # two trials shared the machine: their times are noise
    assert "time overhead (noise: shared machine)" in md and ("(+" in md or "(-" in md)


def test_rerunning_a_finished_ablation_runs_nothing(tmp_path):
    base = write(tmp_path)
    run(base, "ema:decay=0.9", seeds=2, out=tmp_path / "out", progress=False)
    _, before, _ = trials_by_slot(tmp_path / "out")
    summary = run(base, "ema:decay=0.9", seeds=2, out=tmp_path / "out", progress=False)
    _, after, _ = trials_by_slot(tmp_path / "out")
    assert summary["counts"]["done"] == 4
    assert {k: t.number for k, t in before.items()} == {k: t.number for k, t in after.items()}


def test_bad_ablations_fail_before_any_trial(tmp_path, capsys):
    base = write(tmp_path)
    with pytest.raises(ValueError, match="unknown trick 'mixpu'"):
        run(base, "mixpu", out=tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="name the tricks to ablate"):
        run(base, None, out=tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="unknown key in ablation 'seed'; did you mean 'seeds'"):
        run(write(tmp_path, {"ablation": {"tricks": ["ema"], "seed": 3}}, "c.yaml"), out=tmp_path / "c", progress=False)
    assert main(["ablate", "--config", str(base), "--tricks", "ema", "--seeds", "0", "--out", str(tmp_path / "d")]) == 2
    assert "seeds must be an integer >= 1, got 0" in capsys.readouterr().err


def test_sigkill_loses_only_trials_in_flight_and_resume_repeats_nothing(tmp_path):
    slow = {**BASE, "data": {**BASE["data"], "options": {**BASE["data"]["options"], "num_train": 2400}},
            "train": {"epochs": 4, "threads": 1}}
    config = tmp_path / "slow.yaml"
    config.write_text(yaml.safe_dump(slow))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "trickbag", "ablate", "--config", str(config), "--tricks", "label_smoothing,ema",
           "--seeds", "3", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    done_before = {}
    while time.time() < deadline:
        time.sleep(0.3)
        if (out / "ablation.json").exists():
            try:
                _, done_before, _ = trials_by_slot(out)
            except Exception:
                continue
            if len(done_before) >= 3:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    resumed = resume_after_kill(cmd, lambda: trials_by_slot(out), slots=9, in_flight=1, timeout=300)
    assert "report:" in resumed.stdout


def test_two_machines_share_trials_through_postgresql(tmp_path, postgres_url):
    config = write(tmp_path)
    procs = [
        subprocess.Popen([sys.executable, "-m", "trickbag", "ablate", "--config", str(config), "--tricks",
                          "label_smoothing,mixup,cutout:size=3", "--seeds", "3", "--storage", postgres_url,
                          "--out", str(tmp_path / f"worker{i}"), "--study", "shared", "--quiet"],
                         env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (so, se) in zip(procs, outputs):
        assert p.returncode == 0, se[-2000:]
    import optuna

    study = optuna.load_study(study_name="shared", storage=_study.storage_url(postgres_url, tmp_path))
    trials = study.get_trials()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    slots = [t.user_attrs["slot"] for t in complete]
    assert len(slots) == len(set(slots)) == 12  # 4 arms x 3 seeds, each exactly once
    assert not [t for t in trials if t.state != optuna.trial.TrialState.COMPLETE and "discarded" not in t.user_attrs]
    workers = {t.user_attrs["worker"] for t in complete}
    assert len(workers) == 2  # both machines did work
    for i in range(2):  # whichever finished last wrote a complete report; both wrote one
        assert "label_smoothing" in (tmp_path / f"worker{i}" / "report.md").read_text()
    last = max((tmp_path / f"worker{i}" / "report.md" for i in range(2)), key=lambda p: p.stat().st_mtime)
    assert "12 of 12 trials complete" in last.read_text()


def test_adaptive_seeds_stop_decided_arms_within_the_budget(tmp_path, capsys):
    # flooding at b = 0 is the baseline exactly (never decided); a learning rate of 1e-6 cannot learn (decided)
    out = tmp_path / "out"
    easy = write(tmp_path, {"data": {**BASE["data"], "options": {**BASE["data"]["options"], "num_train": 960,
                                                                  "noise": 1.0}}}, "easy.yaml")
    summary = run(easy, "flooding:b=0.0,sgd:lr=1.0e-6", seeds="auto", budget=22, out=out)
    rows = {r["label"]: r for r in summary["rows"]}
    assert summary["counts"]["done"] <= 22
    frozen, same = rows["sgd:lr=1e-06,momentum=0.9,nesterov=True"], rows["flooding:b=0.0"]
    assert frozen["verdict"] == "hurts" and frozen["n"] == frozen["decided_at"] == 4  # stopped at the first look
    assert same["verdict"] == "no evidence at 9 seeds" and same["decided_at"] is None
    assert rows["baseline"]["n"] == 9 and summary["counts"]["done"] == 22
    err = capsys.readouterr().err
    assert "adaptive seeds within a budget of 22 trials" in err and "first round: 12 trials (4 seeds per arm" in err
    assert "next round: 2 trials, one more seed for flooding:b=0.0 (still undecided)" in err
    assert "ETA <=" in err and "started baseline seed 0" in err
    md = (out / "report.md").read_text()
    assert "Lai 1976" in md and "anytime-valid 95% CS" in md
    study, by_slot, slots = trials_by_slot(out)
    assert sorted(slots) == sorted(set(slots))  # every slot ran once
    # resuming a finished adaptive ablation runs nothing more
    again = run(easy, "flooding:b=0.0,sgd:lr=1.0e-6", seeds="auto", budget=22, out=out, progress=False)
    assert again["counts"] == summary["counts"]
    with pytest.raises(ValueError, match="budget 8 is too small: the first look needs 12 trials"):
        run(write(tmp_path), "flooding:b=0.0,sgd:lr=1.0e-6", seeds="auto", budget=8, out=tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="--seeds auto needs --budget N"):
        run(write(tmp_path), "ema", seeds="auto", out=tmp_path / "c", progress=False)


def test_factorial_screening_runs_the_design_and_names_its_aliases(tmp_path):
    out = tmp_path / "out"
    tricks = "flooding:b=0.0,sgd:lr=1.0e-6,label_smoothing,ema:decay=0.9"
    summary = run(write(tmp_path), tricks, seeds=2, mode="factorial", out=out, progress=False)
    assert summary["counts"] == {"planned": 16, "done": 16, "running": 0}  # 8 runs of 2^(4-1), not 16 subsets
    rows = {r["label"]: r for r in summary["rows"]}
    assert rows["sgd:lr=1e-06,momentum=0.9,nesterov=True"]["verdict"] == "hurts"  # a learning rate of 1e-6 cannot learn
    assert rows["flooding:b=0.0"]["verdict"].startswith("no evidence")
    chains = [r["label"] for r in summary["rows"] if r["kind"] == "interaction"]
    assert len(chains) == 3 and all(" = " in c for c in chains)
    md = (out / "report.md").read_text()
    assert "resolution 4" in md and "D = ABC" in md and "Aliased interactions" in md
    for c in chains:
        assert c in md
    text = (out / "table.txt").read_text()
    assert text.startswith("effect ") and "sgd:lr=1e-06,momentum=0.9,nesterov=True" in text
    with pytest.raises(ValueError, match="factorial screening takes a fixed number of seeds"):
        run(write(tmp_path), tricks, seeds="auto", budget=99, mode="factorial", out=tmp_path / "b", progress=False)


def test_a_worker_prepares_the_data_once_for_all_its_trials():
    """Persistent workers: the second trial of a process reuses the first one's decoded splits and
    normaliser (on a GPU the splits also stay on the device)."""
    from trickbag.ablation.trial import _splits
    from trickbag.train import build
    from trickbag.train.config import load_config

    cfg = load_config({"data": {"name": "synthetic", "options": {"num_train": 64, "num_test": 16, "shape": [1, 8, 8],
                                                                 "num_classes": 2}}})
    first = _splits(cfg)
    assert _splits(load_config(cfg.to_dict())) is first  # an equal config: the same splits object
    images = (first.train.inputs * 40).clamp(0, 255).to(torch.uint8)
    assert build._normalizer(images) is build._normalizer(images)
