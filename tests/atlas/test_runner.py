"""The atlas runner end to end on tiny synthetic tasks: cells and n/a, paired seeds, resume after
SIGKILL, two processes on one PostgreSQL storage, the budget."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from subproc import resume_after_kill, subprocess_env
from trickbag import _study
from trickbag.atlas import collect_cells, run
from trickbag.cli import main

BASE = {
    "data": {"name": "synthetic", "options": {"num_train": 192, "num_test": 64, "shape": [1, 8, 8], "num_classes": 3,
                                                "noise": 2.0}, "batch_size": 32, "val_fraction": 0.0},
    "model": {"name": "small_cnn", "width": 4},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "train": {"epochs": 2, "threads": 1},
}


LS_ONLY = {"ls": {"tricks": [{"label_smoothing": {"smoothing": 0.1}}]}}


def write_suite(tmp_path, *, seeds=2, budget=None, num_train=96, epochs=1, tricks=None):
    base = {**BASE, "data": {**BASE["data"], "options": {**BASE["data"]["options"], "num_train": num_train}},
            "train": {**BASE["train"], "epochs": epochs}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "flat.yaml").write_text(yaml.safe_dump({**base, "model": {"name": "mlp", "hidden": [16]}}))
    raw = {"name": "tiny", "seeds": seeds, "metric": "test_acc",
           "tasks": {"img": {"config": "base.yaml"},
                     "flat": {"config": "flat.yaml"}},
           "tricks": tricks or {
               # flooding at b = 0 changes no loss: with paired seeds its cells equal the baseline exactly
               "same": {"tricks": [{"flooding": {"b": 0.0}}], "card": "flooding"},
               "ls": {"tricks": [{"label_smoothing": {"smoothing": 0.1}}]},
               "blurpool": {"tricks": ["blurpool"]},              # the MLP has no strided layer: n/a there
               "dropout": {"set": ["model.dropout=0.2"], "tasks": ["img"], "card": "dropout"},  # declared n/a on flat
           }}
    if budget is not None:
        raw["budget"] = budget
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def trials(out: Path):
    import optuna

    meta = json.loads((out / "atlas.json").read_text())
    study = optuna.load_study(study_name=meta["study"], storage=_study.existing_storage(meta["storage"], out))
    done = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    return study, {t.user_attrs["slot"]: t for t in done}, [t.user_attrs["slot"] for t in done]


def test_every_cell_is_paired_with_its_task_baseline_and_na_cells_run_nothing(tmp_path, capsys):
    summary = run(write_suite(tmp_path, num_train=192, epochs=2), out=tmp_path / "out", workers=1, report=False)
    cells = {(c["task"], c["trick"]): c for c in summary["cells"]}
    assert len(cells) == 8  # 2 tasks x 4 tricks, baselines are not cells
    assert cells[("flat", "blurpool")]["status"] == "n/a" and "changes nothing" in cells[("flat", "blurpool")]["reason"]
    assert cells[("flat", "dropout")]["status"] == "n/a" and "not applied" in cells[("flat", "dropout")]["reason"]
    assert cells[("img", "blurpool")]["status"] == "ok"
    # baseline + 4 arms on img, baseline + 2 on flat; 2 seeds each
    assert summary["counts"] == {"planned": 16, "done": 16, "running": 0}
    for key, c in cells.items():
        if c["status"] == "ok":
            assert c["seeds"] == [0, 1] and c["metric"] == "test_acc" and c["direction"] == "maximize"
            assert set(c["baseline"]) == set(c["treated"]) == {0, 1} and c["failed_seeds"] == []
            assert c["baseline_sd"] is not None
    for task in ("img", "flat"):  # paired seeds: the same initial weights and batches as the baseline
        same = cells[(task, "same")]
        assert same["treated"] == same["baseline"]
    assert cells[("img", "ls")]["treated"] != cells[("img", "ls")]["baseline"]
    assert cells[("img", "ls")]["params"] == {"label_smoothing": {"smoothing": 0.1}}
    assert cells[("img", "dropout")]["params"] == {"set": ["model.dropout=0.2"]}
    err = capsys.readouterr().err
    assert "[16/16]" in err and "ETA" in err
    # a rerun of a finished atlas trains nothing and reads the same cells back
    _, before, _ = trials(tmp_path / "out")
    again = run(write_suite(tmp_path, num_train=192, epochs=2), out=tmp_path / "out", workers=1, report=False,
                progress=False)
    _, after, _ = trials(tmp_path / "out")
    assert {k: t.number for k, t in before.items()} == {k: t.number for k, t in after.items()}
    assert again["cells"] == summary["cells"]
    meta, read = collect_cells(tmp_path / "out")
    assert json.loads(json.dumps(read, default=str)) == json.loads((tmp_path / "out" / "cells.json").read_text())


def test_fold_key_sets_the_fold_from_the_seed(tmp_path):
    from trickbag.atlas.runner import plan_cells, trial_config
    from trickbag.atlas import load_suite

    path = write_suite(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["tasks"]["img"]["fold_key"] = "data.split_seed"
    path.write_text(yaml.safe_dump(raw))
    cells = plan_cells(load_suite(path), check=False)
    cfg = trial_config(next(c for c in cells if c.task.name == "img" and c.arm == "ls"), 2)
    assert cfg["data"]["split_seed"] == 2 and cfg["train"]["seed"] == 2
    assert {"label_smoothing": {"smoothing": 0.1}} in cfg["tricks"]


def test_the_budget_is_respected(tmp_path):
    with pytest.raises(ValueError, match=r"the plan is 16 trials .* over the budget of 10"):
        run(write_suite(tmp_path, budget=10), out=tmp_path / "a", progress=False, report=False)
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match="budget 14 is too small for seeds auto: the first look of every task needs 16"):
        run(write_suite(tmp_path, seeds="auto", budget=14, tricks=LS_ONLY), out=tmp_path / "b", progress=False)
    summary = run(write_suite(tmp_path, seeds="auto", budget=20, tricks=LS_ONLY), out=tmp_path / "b", workers=1,
                  progress=False, report=False)
    assert 16 <= summary["counts"]["done"] <= 20  # at least every task's first look (2 arms x 4 seeds), at most the budget
    _, _, slots = trials(tmp_path / "b")
    assert len(slots) == len(set(slots)) == summary["counts"]["done"]
    with pytest.raises(ValueError, match="seeds: auto needs a budget"):
        run(write_suite(tmp_path, seeds="auto"), out=tmp_path / "c", progress=False, report=False)


def test_sigkill_loses_only_trials_in_flight_and_a_rerun_repeats_nothing(tmp_path):
    suite = write_suite(tmp_path, seeds=3, num_train=800, epochs=2, tricks=LS_ONLY)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "trickbag", "atlas", "--suite", str(suite), "--out", str(out), "--workers", "2",
           "--quiet"]
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline, done = time.time() + 300, {}
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if (out / "atlas.json").exists():
            try:
                _, done, _ = trials(out)
            except Exception:
                continue
            if len(done) >= 3:
                break
    import os

    os.killpg(proc.pid, signal.SIGKILL)  # the command and its worker processes, mid-run
    proc.wait(timeout=30)
    resume_after_kill(cmd, lambda: trials(out), slots=12, in_flight=2)  # 2 workers: 2 in flight


def test_two_processes_share_one_atlas_through_postgresql(tmp_path, postgres_url):
    suite = write_suite(tmp_path, seeds=3, num_train=2400, epochs=3, tricks=LS_ONLY)  # trials outlast a start-up
    procs = [subprocess.Popen([sys.executable, "-m", "trickbag", "atlas", "--suite", str(suite), "--storage", postgres_url,
                               "--out", str(tmp_path / f"machine{i}"), "--study", "shared", "--workers", "1", "--quiet"],
                              env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]
    import optuna

    study = optuna.load_study(study_name="shared", storage=_study.storage_url(postgres_url, tmp_path))
    complete = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    slots = [t.user_attrs["slot"] for t in complete]
    assert len(slots) == len(set(slots)) == 12  # 4 arms x 3 seeds, each exactly once
    assert not [t for t in study.get_trials() if t.state != optuna.trial.TrialState.COMPLETE
                and "discarded" not in t.user_attrs]
    assert len({t.user_attrs["worker"] for t in complete}) == 2  # both processes did work
    for i in range(2):  # each wrote the whole atlas's cells
        cells = json.loads((tmp_path / f"machine{i}" / "cells.json").read_text())
        assert all(len(c["seeds"]) == 3 for c in cells if c["status"] == "ok")


def test_the_cli_runs_an_atlas(tmp_path, capsys):
    assert main(["atlas", "--suite", str(write_suite(tmp_path, seeds=1, tricks=LS_ONLY)), "--out",
                 str(tmp_path / "out"), "--workers", "1", "--quiet"]) == 0
    assert "4 of 4 trials done" in capsys.readouterr().out
    assert main(["atlas", "--suite", str(write_suite(tmp_path)), "--out", str(tmp_path / "x"), "--seeds", "0"]) == 2
    assert (tmp_path / "out" / "report.md").exists() and (tmp_path / "out" / "results.json").exists()
    (tmp_path / "out" / "report.md").unlink()
    assert main(["report", str(tmp_path / "out")]) == 0  # re-rendered from the folder's study
    assert (tmp_path / "out" / "report.md").exists()
    assert json.loads((tmp_path / "out" / "results.json").read_text())["tricks"] == ["ls"]


def test_swa_with_its_own_rate_needs_the_schedule_off_and_then_trains(tmp_path):
    """An SWA arm with swa_lr on a base with a schedule has two lr owners: found when the atlas is
    planned (it used to fail in every trial); with ``set: [schedule=null]`` it builds and trains,
    averaging the epochs from start_epoch and ending on the averaged weights."""
    import torch

    from trickbag.ablation.trial import run_trial
    from trickbag.atlas import load_suite
    from trickbag.atlas.runner import plan_cells, trial_config

    swa = {"swa": {"start_epoch": 1, "swa_lr": 0.01}}
    path = write_suite(tmp_path, epochs=3, tricks={"fights": {"tricks": [swa]},
                                                   "swa": {"tricks": [swa], "set": ["schedule=null"]}})
    raw = yaml.safe_load((tmp_path / "base.yaml").read_text())
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**raw, "schedule": {"name": "cosine_decay"}}))
    cells = {(c.task.name, c.arm): c for c in plan_cells(load_suite(path))}
    assert not cells[("img", "fights")].applies and "both set the learning rate" in cells[("img", "fights")].reason
    cell = cells[("img", "swa")]
    assert cell.applies
    cfg = trial_config(cell, 0)
    assert cfg["schedule"] is None and swa in cfg["tricks"]
    result = run_trial({"config": cfg, "metric": "test_acc", "device": None, "source": None})
    assert "failure" not in result and 0.0 <= result["value"] <= 1.0
    from trickbag.train.build import build_run
    from trickbag.train.config import load_config

    built = build_run(load_config(cfg))
    built.fit()
    averaging = next(c for c in built.trainer.callbacks if type(c).__name__ == "SWA")
    assert int(averaging.averaged.n_averaged) == 2  # the ends of epochs 1 and 2
    final, averaged = built.trainer.state.raw_model.state_dict(), averaging.averaged.module.state_dict()
    assert all(torch.equal(final[k], averaged[k]) for k in final)  # the run ends on the average
    means = [v for k, v in final.items() if k.endswith("running_mean")]
    assert means and all(v.abs().sum() > 0 for v in means)  # BatchNorm statistics recomputed, not reset
