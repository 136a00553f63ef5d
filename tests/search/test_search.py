"""The search: a known best learning rate, border and noise warnings, stages, kill and resume,
PostgreSQL workers, the shipped Fashion-MNIST config."""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from trickbag import _study
from subproc import subprocess_env
from trickbag.cli import main
from trickbag.data.vision import DEBIAN_FMNIST
from trickbag.search import border_warnings, load_space, narrow, run
from trickbag.search.runner import noise_warning, winners_curse_warning
from trickbag.search.space import Param
from trickbag.train.config import load_config

# Least squares on whitened inputs with full-batch gradient descent: the Hessian is close to
# 2I, so the best learning rate is about 1 / (lambda_min + lambda_max) = 0.5 (checked in
# test_the_known_optimum), and rates above 1 diverge.
REGRESSION = {
    "data": {"name": "synthetic", "options": {"task": "regression", "shape": [8], "num_train": 512, "num_test": 256},
             "batch_size": 460, "val_fraction": 0.1},
    "model": {"name": "mlp", "hidden": []},
    "loss": {"name": "mse"},
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0},
    "train": {"epochs": 3, "threads": 1, "nan_guard": False},
    "search": {"metric": "val_loss", "trials": 16, "fine_trials": 10, "pruner": "none", "noise_seeds": 3,
               "coarse_epochs": 3},
}


def write(tmp_path, cfg=REGRESSION, name="c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


env = subprocess_env


def stage_trials(out: Path, stage: str):
    import optuna

    meta = json.loads((out / "search.json").read_text())
    study = optuna.load_study(study_name=f"{meta['study']}-{stage}", storage=_study.storage_url(meta["storage"], out))
    return study.get_trials()


def test_the_known_optimum():
    from trickbag.train.build import build_run

    losses = {}
    for lr in (0.3, 0.5, 0.7):
        cfg = load_config(REGRESSION, [f"optimizer.lr={lr}", "train.progress=false"])
        losses[lr] = build_run(cfg).fit()["final"]["val_loss"]
    assert losses[0.5] < losses[0.3] and losses[0.5] < losses[0.7]


def test_finds_the_known_best_learning_rate(tmp_path):
    summary = run(write(tmp_path), {"lr": "loguniform(1e-3, 10)"}, out=tmp_path / "out", progress=False)
    best = summary["best"]["lr"]
    assert 0.5 / 1.6 <= best <= 0.5 * 1.6, best  # within a factor 1.6 (0.2 decades) of the optimum
    meta = json.loads((tmp_path / "out" / "search.json").read_text())
    fine = Param.from_dict(meta["fine_space"][0])
    assert 1e-3 <= fine.low < fine.high <= 10 and fine.low < 0.5 < fine.high  # inside the coarse range
    assert not [w for w in summary["warnings"] if "lr" in w and "tenth" in w]
    best_cfg = load_config(tmp_path / "out" / "best.yaml")  # trickbag train accepts it as it is
    assert best_cfg.optimizer["lr"] == pytest.approx(best)
    assert main(["train", "--config", str(tmp_path / "out" / "best.yaml"), "--out", str(tmp_path / "retrain"),
                 "train.epochs=1"]) == 0
    html = (tmp_path / "out" / "report.html").read_text()
    assert "param_lr.png" in html and "Top trials" in html and "Test split, reported once" in html
    assert len(stage_trials(tmp_path / "out", "final")) == 3


def test_border_warning_fires_when_the_range_excludes_the_best(tmp_path):
    cfg = dict(REGRESSION, search={**REGRESSION["search"], "trials": 8, "stages": "coarse", "noise_seeds": 0})
    summary = run(write(tmp_path, cfg), {"lr": "loguniform(1e-3, 0.2)"}, out=tmp_path / "out", progress=False)
    warned = [w for w in summary["warnings"] if w.startswith("best lr")]
    assert warned and "upper tenth" in warned[0] and "loguniform(0.001, 2)" in warned[0]


def test_border_and_noise_rules():
    p = Param("lr", "optimizer.lr", "float", 1e-4, 1.0, True)
    assert border_warnings([p], {"lr": 0.5}) and "upper tenth" in border_warnings([p], {"lr": 0.5})[0]
    assert border_warnings([p], {"lr": 1.3e-4})[0].count("lower tenth") == 1
    assert border_warnings([p], {"lr": 1e-2}) == []  # the middle on a log scale
    lin = Param("dropout", "model.dropout", "float", 0.0, 0.5, False)
    assert border_warnings([lin], {"dropout": 0.48}) and not border_warnings([lin], {"dropout": 0.3})
    assert noise_warning([0.91, 0.909], [0.90, 0.92, 0.91], "val_acc") is not None
    assert noise_warning([0.95, 0.80], [0.90, 0.901, 0.90], "val_acc") is None


def test_winners_curse_rule():
    """The issue's search: best 0.4775 on one seed, retrained 0.380 +- 0.038: warned; within 2 sd: not."""
    w = winners_curse_warning(0.4775, [0.34, 0.38, 0.42], "val_acc")
    assert w.startswith("winner's curse: the search's best val_acc 0.4775 was a lucky draw") and "0.38" in w
    assert winners_curse_warning(0.44, [0.34, 0.38, 0.42], "val_acc") is None  # 1.5 sd
    assert winners_curse_warning(0.30, [0.34, 0.38, 0.42], "val_acc") is None  # retrained better
    assert "higher" in winners_curse_warning(0.10, [0.30, 0.31, 0.32], "val_loss", maximize=False)
    assert winners_curse_warning(0.31, [0.30, 0.31, 0.32], "val_loss", maximize=False) is None
    assert winners_curse_warning(0.9, [0.5], "val_acc") is None  # one seed: no spread to judge by


def test_the_console_prints_the_retrained_mean_and_the_test_score(tmp_path, capsys):
    cfg = dict(REGRESSION, search={**REGRESSION["search"], "trials": 4, "stages": "coarse", "noise_seeds": 2})
    assert main(["search", "--config", str(write(tmp_path, cfg)), "--space", str(write(tmp_path, {"lr": "loguniform(0.05, 2)"}, "s.yaml")),
                 "--quiet", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^best: lr=\S+  \(val_loss \S+, one seed, selected on validation\)$", printed, flags=re.M), printed
    assert re.search(r"^retrained with 2 seeds: val_loss \d\.\d+ \+- \d\.\d+; test split \(reported once\): "
                     r"test_loss \d\.\d+$", printed, flags=re.M), printed
    warnings = json.loads((tmp_path / "out" / "warnings.json").read_text())
    assert [line[len("warning: "):] for line in printed.splitlines() if line.startswith("warning: ")] == warnings


def test_narrowing_stays_inside_and_keeps_good_choices():
    ps = [Param("lr", "optimizer.lr", "float", 1e-5, 1.0, True), Param("optimizer", "optimizer.name", "choice", choices=("sgd", "adamw", "radam")),
          Param("width", "model.width", "int", 8, 64)]
    trials = [({"lr": 10 ** -(i % 5), "optimizer": ("sgd", "adamw", "radam")[i % 3], "width": 8 + 4 * i}, float(i)) for i in range(12)]
    fine = narrow(ps, trials, maximize=True)
    for c, f in zip(ps, fine):
        if f.kind != "choice":
            assert c.low <= f.low < f.high <= c.high
    assert set(fine[1].choices) <= set(ps[1].choices)


def test_bad_spaces_fail_before_any_trial(tmp_path):
    base = load_config(REGRESSION)
    with pytest.raises(ValueError, match="unknown search key 'lrr'; did you mean 'lr'"):
        load_space({"lrr": "loguniform(1e-3, 1)"}, base)
    with pytest.raises(ValueError, match="unknown search key 'train.epoch'; did you mean 'train.epochs'"):
        load_space({"train.epoch": "int(1, 3)"}, base)
    with pytest.raises(ValueError, match="unknown search key 'mixupp.alpha'"):
        load_space({"mixupp.alpha": "uniform(0.1, 0.3)"}, base)
    with pytest.raises(ValueError, match="a log-scale range must be positive"):
        load_space({"lr": "loguniform(0, 1)"}, base)
    with pytest.raises(ValueError, match="unknown distribution for lr 'lognormal'"):
        load_space({"lr": "lognormal(0, 1)"}, base)
    params, advice = load_space({"lr": "uniform(1e-4, 1)", "momentum": [0.8, 0.99]}, base)
    assert advice and "loguniform" in advice[0] and not params[1].log
    assert load_space({"lr": [1e-4, 1.0]}, base)[0][0].log  # bare ranges of scale parameters: log
    with pytest.raises(ValueError, match="does not build: unknown parameter for model mlp 'widht'"):
        run(write(tmp_path), {"model.widht": "int(2, 8)"}, out=tmp_path / "out", progress=False)


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_pruned_trials_keep_their_partial_curves(tmp_path, pruner):
    cfg = dict(REGRESSION, search={**REGRESSION["search"], "trials": 14, "stages": "coarse", "pruner": pruner,
                                   "noise_seeds": 0})
    run(write(tmp_path, cfg), {"lr": "loguniform(1e-3, 10)"}, out=tmp_path / "out", progress=False)
    trials = stage_trials(tmp_path / "out", "coarse")
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned and all(t.intermediate_values for t in pruned)
    stopped_early = [len(t.user_attrs["curve"]) < 3 for t in pruned]
    # The median rule prunes mid-run only; Hyperband's last rung sits at the full budget, so
    # some of its pruned trials ran to the end, but its first rung stops others after one epoch.
    assert all(stopped_early) if pruner == "median" else any(stopped_early)


def test_a_killed_search_resumes_without_repeating_finished_trials(tmp_path):
    slow = dict(REGRESSION, data={**REGRESSION["data"], "options": {**REGRESSION["data"]["options"], "num_train": 20000},
                                  "batch_size": 64},
                search={**REGRESSION["search"], "trials": 10, "stages": "coarse", "noise_seeds": 0, "coarse_epochs": 2})
    config = write(tmp_path, slow)
    space = tmp_path / "space.yaml"
    space.write_text("lr: loguniform(1e-3, 0.5)\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "trickbag", "search", "--config", str(config), "--space", str(space), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, before = time.time() + 180, []
    while time.time() < deadline:
        time.sleep(0.3)
        try:
            before = [t for t in stage_trials(out, "coarse") if t.state.name == "COMPLETE"]
        except Exception:
            continue
        if len(before) >= 3:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    at_kill = {t.user_attrs["slot"]: t for t in stage_trials(out, "coarse") if t.state.name == "COMPLETE"}
    assert 3 <= len(at_kill) < 10
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    after = [t for t in stage_trials(out, "coarse") if t.state.name == "COMPLETE"]
    slots = [t.user_attrs["slot"] for t in after]
    assert len(slots) == len(set(slots)) == 10
    by_slot = {t.user_attrs["slot"]: t for t in after}
    for slot, t in at_kill.items():
        assert by_slot[slot].number == t.number and by_slot[slot].datetime_complete == t.datetime_complete


def test_two_workers_on_postgresql_complete_every_trial_once(tmp_path, postgres_url):
    cfg = dict(REGRESSION, search={**REGRESSION["search"], "trials": 8, "fine_trials": 4, "noise_seeds": 2})
    config = write(tmp_path, cfg)
    space = tmp_path / "space.yaml"
    space.write_text("lr: loguniform(1e-3, 10)\n")
    procs = [subprocess.Popen([sys.executable, "-m", "trickbag", "search", "--config", str(config), "--space", str(space),
                               "--storage", postgres_url, "--study", "shared", "--out", str(tmp_path / f"w{i}"), "--quiet"],
                              env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    import optuna

    storage = _study.storage_url(postgres_url, tmp_path)
    workers = set()
    for stage, n in (("coarse", 8), ("fine", 4), ("final", 2)):
        trials = optuna.load_study(study_name=f"shared-{stage}", storage=storage).get_trials()
        finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
        slots = [t.user_attrs["slot"] for t in finished]
        assert len(slots) == len(set(slots)) == n, stage
        assert not [t for t in trials if t not in finished and "discarded" not in t.user_attrs]
        workers |= {t.user_attrs["worker"] for t in finished}
    assert len(workers) == 2
    results = [yaml.safe_load((tmp_path / f"w{i}" / "best.yaml").read_text())["optimizer"]["lr"] for i in range(2)]
    assert results[0] == results[1]  # both machines agree on the best configuration


@pytest.mark.slow
def test_shipped_fashion_mnist_config_end_to_end(tmp_path, capsys):
    if not DEBIAN_FMNIST.exists() and not os.environ.get("TRICKBAG_DATA"):
        pytest.skip("Fashion-MNIST is not installed (Debian package dataset-fashion-mnist; .ci/run installs it)")
    root = Path(__file__).parents[2]
    code = main(["search", "--config", str(root / "configs" / "fashion_mnist_cnn.yaml"), "--space",
                 str(root / "configs" / "fashion_mnist_space.yaml"), "--trials", "4", "--out", str(tmp_path / "out"),
                 "--quiet", "data.subset=1500", "data.eval_subset=1000", "model.width=8", "train.epochs=1", "train.threads=2",
                 "search.coarse_epochs=0.5", "search.fine_trials=3", "search.noise_seeds=2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "best: lr=" in printed and "best.yaml" in printed and "retrained with 2 seeds: val_acc" in printed
    for key in ("lr", "weight_decay", "momentum", "mixup_alpha", "cutout_size"):
        assert (tmp_path / "out" / f"param_{key}.png").exists()
    best = load_config(tmp_path / "out" / "best.yaml")
    assert {t.name for t in best.tricks} == {"mixup", "cutout"}


def test_numbers_keep_their_digits_and_warnings_their_ends():
    from trickbag.report.page import fmt

    assert fmt(3.59e-05) == "3.59e-05" and fmt(0.91234) == "0.9123" and fmt(0.0) == "0"
    warning = noise_warning([0.91, 0.909], [0.90, 0.92, 0.91], "val_acc")
    assert warning.endswith("would separate them.")


def test_the_best_trial_comes_from_every_stage_that_trained_the_full_budget(tmp_path):
    """With coarse trials as long as fine ones, a coarse trial can be the best; the summary and
    the report agree on it."""
    cfg = dict(REGRESSION, search={**REGRESSION["search"], "trials": 6, "fine_trials": 3, "noise_seeds": 0,
                                   "coarse_epochs": 3, "fine_epochs": 3})
    summary = run(write(tmp_path, cfg), {"lr": "loguniform(1e-3, 2)"}, out=tmp_path / "out", progress=False)
    every = [(s, t.value) for s in ("coarse", "fine") for t in stage_trials(tmp_path / "out", s)
             if t.state.name == "COMPLETE" and t.value is not None]
    assert summary["best_value"] == min(v for _, v in every)
    html = (tmp_path / "out" / "report.md").read_text()
    best_stage = next(s for s, v in every if v == summary["best_value"])
    assert f"of the {best_stage} stage" in html
    top = html[html.index("## Top trials"):html.index("## Metric against")]
    assert "| coarse |" in top and "| fine |" in top  # both stages compete in the table


def test_search_report_loads_in_chromium(tmp_path):
    from monitor.test_report import chromium, open_in_chromium

    if chromium() is None:
        pytest.skip("Chromium is not installed (Debian package chromium; .ci/run installs it)")
    cfg = dict(REGRESSION, search={**REGRESSION["search"], "trials": 5, "stages": "coarse", "noise_seeds": 2})
    run(write(tmp_path, cfg), {"lr": "loguniform(1e-3, 2)", "weight_decay": "loguniform(1e-6, 1e-2)"},
        out=tmp_path / "out", progress=False)
    html = (tmp_path / "out" / "report.html").read_text()
    images = html.count("<img ")
    assert images >= 2
    dom = open_in_chromium(tmp_path / "out" / "report.html")
    assert f"IMAGES {images} BROKEN []" in dom, dom[-500:]
    assert (tmp_path / "out" / "report_screenshot.png").stat().st_size > 10_000
