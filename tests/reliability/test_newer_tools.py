"""Reliability of the newer tools and of the command line (issue 23, item 4): a run folder a
kill left before its first file, bad YAML in overrides, overrides anywhere on the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trickbag.cli import main

from .helpers import assert_killed, forked_cli, write_config


def test_a_run_killed_in_its_first_write_starts_again_with_the_same_command(tmp_path, capsys):
    config = write_config(tmp_path, {"epochs": 1})
    out = tmp_path / "run"
    argv = ["train", "--config", str(config), "--out", str(out)]
    assert_killed(forked_cli(argv, kill="write:1"))  # in the middle of writing config.yaml
    assert [p.name for p in out.iterdir()][0].startswith(".config.yaml.") and not (out / "config.yaml").exists()
    assert main(["train", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "stopped before it started" in err and f"--out {out}" in err
    assert main(argv) == 0
    assert (out / "results.json").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


VERBS_WITH_OVERRIDES = ["train", "ablate", "search", "lr-find", "multitask", "clean", "gan"]


@pytest.mark.parametrize("verb", VERBS_WITH_OVERRIDES)
def test_bad_yaml_in_an_override_is_one_line_in_every_verb(verb, tmp_path, capsys):
    config = write_config(tmp_path)
    extra = ["--task", "coarse=0,1,0"] if verb == "multitask" else []
    assert main([verb, "--config", str(config), *extra, "train.epochs=[", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if ": starting (" not in line]  # ablate's first line
    assert len(lines) == 1 and "'['" in err and "not valid YAML" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("verb", VERBS_WITH_OVERRIDES)
def test_overrides_after_out_or_quiet_are_accepted(verb, tmp_path, capsys):
    from trickbag.cli import _parse, build_parser

    args = _parse(build_parser(), [verb, "--config", "c.yaml", "train.seed=1", "--out", "o", "train.epochs=2",
                                   *(["--quiet"] if verb not in ("train", "lr-find") else []), "model.width=8"])
    assert args.overrides == ["train.seed=1", "train.epochs=2", "model.width=8"] and args.out == "o"
    with pytest.raises(SystemExit):
        _parse(build_parser(), [verb, "--config", "c.yaml", "--out", "o", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse(build_parser(), ["list", "train.epochs=2"])  # a verb without overrides


def test_an_override_after_out_takes_effect(tmp_path):
    import json

    out = tmp_path / "run"
    assert main(["train", "--config", str(write_config(tmp_path)), "--out", str(out), "train.epochs=1"]) == 0
    assert len(json.loads((out / "results.json").read_text())["history"]) == 1


# ---- clean -------------------------------------------------------------------------------------

CLEAN = {
    "data": {"name": "synthetic", "options": {"num_train": 200, "num_test": 50, "shape": [8], "num_classes": 3,
                                              "noise": 0.6, "seed": 1},
             "batch_size": 32, "val_fraction": 0.2, "label_noise": {"rate": 0.2, "seed": 0}},
    "model": {"name": "mlp", "hidden": [8]},
    "optimizer": {"name": "adamw", "lr": 0.01},
    "train": {"epochs": 2, "threads": 1, "progress": False, "checkpoint_every_epochs": None, "device": "cpu"},
}


def clean_argv(tmp_path, out, *extra):
    import yaml

    config = tmp_path / "clean.yaml"
    if not config.exists():
        config.write_text(yaml.safe_dump(CLEAN))
    return ["clean", "--config", str(config), "--models", "mlp,mlp:hidden=[4]", "--folds", "2", "--quiet",
            "--out", str(out), *extra]


def clean_numbers(out):
    import json

    result = json.loads((out / "clean.json").read_text())
    return ({k: v for k, v in result.items() if k not in ("times", "provenance")}, (out / "suspects.csv").read_text())


def test_clean_recomputes_a_torn_cache_with_a_warning(tmp_path, capsys):
    out = tmp_path / "clean"
    assert main(clean_argv(tmp_path, out)) == 0
    first = clean_numbers(out)
    cache = out / "probs-mlp.pt"
    probs = cache.read_bytes()
    cache.write_bytes(probs[: len(probs) // 2])
    capsys.readouterr()
    assert main(clean_argv(tmp_path, out)) == 0
    err = capsys.readouterr().err
    assert "probs-mlp.pt is damaged" in err and "recomputing" in err and "Traceback" not in err, err
    assert cache.read_bytes() == probs and clean_numbers(out) == first


def test_clean_refuses_its_caches_under_another_config_naming_the_keys(tmp_path, capsys):
    out = tmp_path / "clean"
    assert main(clean_argv(tmp_path, out)) == 0
    capsys.readouterr()
    for override, needle in [("optimizer.lr=0.02", "optimizer.lr (0.01 -> 0.02)"),
                             ("data.subset=100", "data.subset (None -> 100)")]:
        assert main(clean_argv(tmp_path, out, override)) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and needle in err and "another config" in err, err
    # what the caches do not depend on may change: the rule, the agreement threshold
    assert main(clean_argv(tmp_path, out, "--rule", "either", "--min-agree", "1")) == 0


@pytest.mark.parametrize("extra, needle", [(["--min-agree", "0"], "min_agree must be an integer >= 1, got 0"),
                                           (["--min-agree", "3"], "at most the number of model types (2), got 3"),
                                           (["--retrain-seeds", "-1"], "retrain_seeds must be an integer >= 0, got -1"),
                                           (["--folds", "1"], "folds must be an integer >= 2, got 1")])
def test_clean_refuses_nonsense_sizes_before_training(extra, needle, tmp_path, capsys):
    out = tmp_path / "clean"
    assert main(clean_argv(tmp_path, out, *extra)) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists()  # nothing trained, nothing written


def test_clean_on_an_unwritable_or_full_folder_is_one_line_and_recovers(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(clean_argv(tmp_path, blocker / "clean")) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and str(blocker) in err and "not a folder" in err, err
    out, err_file = tmp_path / "clean", tmp_path / "stderr"
    # a file-size limit fails writes as a full disk does: the first probabilities (about 5 kB) do not fit
    assert forked_cli(clean_argv(tmp_path, out), err=err_file, file_size_limit=4096) == 2
    err = err_file.read_text()
    assert len(err.splitlines()) == 1 and "probs-mlp.pt" in err and "file-size limit" in err, err
    assert not (out / "probs-mlp.pt").exists() and not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert main(clean_argv(tmp_path, out)) == 0
    reference = tmp_path / "reference"
    assert main(clean_argv(tmp_path, reference)) == 0
    assert clean_numbers(out) == clean_numbers(reference)


def test_clean_on_a_read_only_disk_is_one_line(tmp_path, capsys):
    from .test_disk import LIMIT

    point = tmp_path / "ro"
    point.mkdir()
    import subprocess

    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={LIMIT},ro", "tmpfs", str(point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        assert main(clean_argv(tmp_path, point / "clean")) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "read-only" in err, err
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.mark.parametrize("kill", ["write:2", "write:4", "write:7"])
def test_clean_killed_in_a_write_then_rerun_gives_the_same_numbers(kill, tmp_path):
    """SIGKILL inside an atomic write (probs.json, a cache, the results): the same command
    finishes the job with the numbers of an uninterrupted run."""
    reference = tmp_path / "reference"
    assert main(clean_argv(tmp_path, reference)) == 0
    out = tmp_path / "clean"
    assert_killed(forked_cli(clean_argv(tmp_path, out), kill=kill))
    assert main(clean_argv(tmp_path, out)) == 0
    assert clean_numbers(out) == clean_numbers(reference)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ---- ensemble, export: damaged and malicious files ----------------------------------------------

class Planted:
    """Unpickling this creates a file: proof that a pickle ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny finished run (its model.pt, best_model.pt and results.json)."""
    folder = tmp_path_factory.mktemp("trained")
    out = folder / "run"
    assert main(["train", "--config", str(write_config(folder, {"epochs": 1}, tricks=[])), "--out", str(out)]) == 0
    return out


def copy_run(trained, tmp_path):
    import shutil

    return Path(shutil.copytree(trained, tmp_path / "copy"))


def test_ensemble_device_typo_is_one_line(trained, tmp_path, capsys):
    assert main(["ensemble", str(trained), "--device", "cdua", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "'cdua'" in err and "'cuda:N'" in err, err
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("verb", ["ensemble", "export"])
def test_a_truncated_model_pt_is_one_line(verb, trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path)
    for name in ("model.pt", "best_model.pt"):
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: len(data) // 2])
    argv = {"ensemble": ["ensemble", str(run), "--out", str(tmp_path / "e")], "export": ["export", str(run)]}[verb]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "model.pt is damaged" in err and "cut short" in err, err


@pytest.mark.parametrize("verb", ["ensemble", "export", "clean"])
def test_a_malicious_pickle_is_refused_in_one_line_and_never_run(verb, trained, tmp_path, capsys):
    import torch

    proof = tmp_path / "proof-that-code-ran"
    if verb == "clean":
        out = tmp_path / "clean"
        assert main(clean_argv(tmp_path, out)) == 0
        target, argv = out / "probs-mlp.pt", clean_argv(tmp_path, out)
    else:
        run = copy_run(trained, tmp_path)
        target = run / ("model.pt" if verb == "ensemble" else "best_model.pt")
        argv = ["ensemble", str(run), "--out", str(tmp_path / "e")] if verb == "ensemble" else ["export", str(run)]
    torch.save({"w": Planted(proof)}, target)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "refusing to load" in err and "a pickle can run code" in err, err
    assert not proof.exists()


def test_a_truncated_tar_gz_is_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("PIL")
    from .test_bad_input import write_tar

    monkeypatch.setenv("TRICKBAG_CACHE", str(tmp_path / "cache"))
    archive = write_tar(tmp_path / "pack.tar.gz", [])
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 2 // 3])
    config = write_config(tmp_path, {"epochs": 1}, data={"name": "image_folder", "path": str(archive), "batch_size": 2},
                          model={"name": "small_cnn", "width": 4}, tricks=[])
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "pack.tar.gz: the archive is damaged or cut short" in err, err


# ---- ablate --seeds auto: two processes on one folder stay within the budget ---------------------

def _slow_add_slots(sleep: float) -> None:
    """Widen the window between ``add_slots`` reading the study's trials and queueing more."""
    import sys
    import time

    from trickbag import _study

    reads = _study.PlannedStudy._trials

    def slow(self, states=None):
        found = reads(self, states)
        if sys._getframe(1).f_code.co_name == "add_slots":
            time.sleep(sleep)
        return found

    _study.PlannedStudy._trials = slow


def _child(log: str, fn, *args) -> None:
    import os
    import sys

    sys.stderr = open(log, "w")  # noqa: SIM115 - the process ends here
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - reported through the log
        print(repr(exc), file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)
    sys.stderr.flush()
    os._exit(0)


def _two_processes(tmp_path, fn, *args, timeout: float = 300) -> None:
    """Run ``fn(*args)`` in two forked processes at once; both must succeed."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_child, args=(str(tmp_path / f"log{i}"), fn, *args)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    for i, p in enumerate(procs):
        assert p.exitcode == 0, (tmp_path / f"log{i}").read_text()[-3000:]


def _adaptive_copy(config: str, out: str, budget: int) -> None:
    from trickbag.ablation import run

    _slow_add_slots(0.3)
    run(config, "flooding:b=0.0", seeds="auto", budget=budget, out=out, heartbeat_interval=0.2, progress=False,
        report=False)


def _all_trials(out):
    import json

    import optuna

    from trickbag import _study

    meta = json.loads((out / "ablation.json").read_text())
    return optuna.load_study(study_name=meta["study"], storage=_study.storage_url(meta["storage"], out)).get_trials()


def test_two_adaptive_copies_on_one_folder_never_exceed_the_budget(tmp_path):
    """Two copies of the same ``--seeds auto`` command on one SQLite folder. Flooding at b = 0
    equals the baseline exactly, so it is never decided and the design spends its whole budget:
    8 trials (4 seeds x 2 arms) at the first look, then 2 more."""
    import optuna

    config = write_config(tmp_path, {"epochs": 1, "checkpoint_every_epochs": None}, tricks=[])
    out, budget = tmp_path / "ablation", 10
    _two_processes(tmp_path, _adaptive_copy, str(config), str(out), budget)
    done = [t.user_attrs["slot"] for t in _all_trials(out) if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == len(set(done)) == budget, sorted(done)  # every slot once, the budget exactly


def _next_round_at_once(out: str, config: str, budget: int, together) -> None:
    from trickbag.ablation.runner import _next_round, _Progress

    planned, spec = _adaptive_study(out, config, budget)
    _slow_add_slots(0.5)
    together.wait(timeout=60)
    _next_round(spec, planned, _Progress(False))


def _adaptive_study(out, config, budget):
    from trickbag import _study
    from trickbag.ablation.runner import spec_from_config
    from trickbag.train.config import load_config

    spec = spec_from_config(load_config(config), tricks="flooding:b=0.0", seeds="auto", budget=budget)
    planned = _study.PlannedStudy(_study.open_storage(_study.storage_url(None, out)), "adaptive", spec.direction, [],
                                  spec.plan_id())
    planned.open()
    return planned, spec


def test_two_processes_looking_at_once_queue_the_next_round_once(tmp_path):
    """The race itself, made certain: the first round done, two processes plan the next one at
    the same moment (the planner's reads slowed down). Only one may queue it."""
    import multiprocessing

    import optuna

    from trickbag.ablation.runner import _next_round, _Progress

    config = write_config(tmp_path, tricks=[])
    out, budget = tmp_path / "ablation", 10
    out.mkdir()
    planned, spec = _adaptive_study(out, config, budget)
    assert _next_round(spec, planned, _Progress(False)) == 8  # the first look: 4 seeds x 2 arms
    while (trial := planned.claim()) is not None:  # the same metric in both arms: never decided
        planned.finish(trial, 0.5 + 0.01 * trial.user_attrs["seed"], {})
    _two_processes(tmp_path, _next_round_at_once, out, config, budget, multiprocessing.get_context("fork").Barrier(2),
                   timeout=120)
    trials = planned.storage.get_all_trials(planned.study_id)
    waiting = sorted(t.user_attrs["slot"] for t in trials if t.state == optuna.trial.TrialState.WAITING)
    assert waiting == ["0:4", "1:4"] and len(trials) == budget, waiting


# ---- configs and folders are code: refused from a folder unless --trust ---------------------------

PLANTED = '''
import os
import json
from pathlib import Path

import torch

MARK = Path(os.environ["TRICKBAG_TEST_MARK"])


def load(n=120):
    """Harmless, but it leaves a mark: proof that the folder's code ran."""
    MARK.write_text("data ran")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] > 0).long()
    return (x[:90], y[:90]), (x[90:105], y[90:105]), (x[105:], y[105:])
'''
PLUGIN = '''
import os
import json
from pathlib import Path

Path(os.environ["TRICKBAG_TEST_MARK"]).write_text("plugin imported")
'''


@pytest.fixture
def planted(tmp_path, monkeypatch):
    import sys

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "planted_data.py").write_text(PLANTED)
    (pkg / "planted_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(pkg))
    mark = tmp_path / "mark"
    monkeypatch.setenv("TRICKBAG_TEST_MARK", str(mark))
    yield mark
    for name in ("planted_data", "planted_plugin"):
        sys.modules.pop(name, None)


def _refused(capsys, needle):
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and needle in err and "--trust" in err and "is code" in err, err


def test_a_run_folder_naming_code_is_refused_unless_trusted(planted, tmp_path, capsys):
    import shutil

    import yaml

    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({"data": {"name": "planted_data:load", "batch_size": 16}, "model": {"name": "mlp", "hidden": [8]},
                                      "train": {"epochs": 1, "threads": 1, "progress": False}}))
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run)]) == 0  # the user's own config: allowed
    assert planted.read_text() == "data ran"
    planted.unlink()
    killed = Path(shutil.copytree(run, tmp_path / "killed"))
    (killed / "results.json").unlink()  # as if killed before the end: --resume would train
    for argv in (["ensemble", str(run), "--out", str(tmp_path / "e")], ["export", str(run)],
                 ["train", "--resume", str(killed)]):
        assert main(argv) == 2
        _refused(capsys, "names code to run (data.name: planted_data:load)")
        assert not planted.exists()
    assert main(["ensemble", str(run), "--out", str(tmp_path / "e"), "--trust"]) == 0
    assert planted.exists()


def test_report_refuses_the_plugins_a_received_ablation_lists_unless_trusted(planted, tmp_path, capsys):
    import sys

    config = write_config(tmp_path, {"epochs": 1, "checkpoint_every_epochs": None}, tricks=[],
                          plugins=["planted_plugin"])
    out = tmp_path / "ablation"
    assert main(["ablate", "--config", str(config), "--tricks", "ema", "--seeds", "1", "--quiet",
                 "--out", str(out)]) == 0  # the user's own config, its report included: allowed
    assert planted.read_text() == "plugin imported"
    planted.unlink()
    sys.modules.pop("planted_plugin")
    assert main(["report", str(out)]) == 2
    _refused(capsys, "names code to run (plugins: planted_plugin)")
    assert not planted.exists()
    assert main(["report", str(out), "--trust"]) == 0
    assert planted.exists()


def test_export_killed_inside_its_write_leaves_no_torn_program(trained, tmp_path):
    import torch

    run = copy_run(trained, tmp_path)
    assert_killed(forked_cli(["export", str(run)], kill="write:1"))
    assert not (run / "model.pt2").exists()  # the old file or the new one, never half of one
    assert main(["export", str(run)]) == 0
    torch.export.load(run / "model.pt2").module()


def test_report_of_a_run_with_a_malicious_model_pt_is_one_line(trained, tmp_path, capsys):
    import torch

    run = copy_run(trained, tmp_path)
    proof = tmp_path / "proof-that-code-ran"
    torch.save({"w": Planted(proof)}, run / "model.pt")
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "refusing to load" in err, err
    assert not proof.exists()


def test_clean_reads_an_older_record_with_todays_defaults(tmp_path):
    """A probs.json written before a config key existed is the same config (the key's default)."""
    import json

    out = tmp_path / "clean"
    assert main(clean_argv(tmp_path, out)) == 0
    record = json.loads((out / "probs.json").read_text())
    del record["config"]["train"]["deterministic"]  # as if saved before the key was added
    (out / "probs.json").write_text(json.dumps(record))
    before = (out / "probs-mlp.pt").stat().st_mtime_ns
    assert main(clean_argv(tmp_path, out)) == 0
    assert (out / "probs-mlp.pt").stat().st_mtime_ns == before  # reused, not recomputed


def _atlas_copy(suite: str, out: str, together) -> None:
    import sys

    from trickbag import _study
    from trickbag.atlas import run

    reads = _study.PlannedStudy._trials

    def slow(self, states=None):
        """add_slots's first read waits for the other copy (2 s at most: under the study lock it
        cannot come), then dawdles, so that without the lock both would queue the first round."""
        found = reads(self, states)
        if sys._getframe(1).f_code.co_name == "add_slots" and not together.broken:
            try:
                together.wait(timeout=2)
            except Exception:  # noqa: BLE001 - BrokenBarrierError: the other copy waits for the lock
                pass
            together.abort()
            found = reads(self, states)
            __import__("time").sleep(0.3)
        return found

    _study.PlannedStudy._trials = slow
    run(suite, out=out, workers=1, heartbeat_interval=0.2, progress=False, report=False)


def test_two_atlas_copies_on_one_folder_queue_each_round_once(tmp_path):
    """``seeds: auto`` in the atlas plans its rounds as the ablation does: two copies started
    together on one SQLite folder never queue a slot twice nor pass the budget."""
    import multiprocessing

    import optuna
    import yaml

    config = write_config(tmp_path, {"epochs": 1, "checkpoint_every_epochs": None}, tricks=[])
    suite = tmp_path / "suite.yaml"  # one task, 2 arms: 4 trials at the first look
    suite.write_text(yaml.safe_dump({"name": "tiny", "seeds": "auto", "budget": 10, "metric": "test_acc",
                                     "tasks": {"flat": {"config": config.name}},
                                     "tricks": {"ls": {"tricks": [{"label_smoothing": {"smoothing": 0.1}}]}}}))
    out = tmp_path / "atlas"
    _two_processes(tmp_path, _atlas_copy, str(suite), str(out), multiprocessing.get_context("fork").Barrier(2))
    meta = json.loads((out / "atlas.json").read_text())
    from trickbag import _study

    study = optuna.load_study(study_name=meta["study"], storage=_study.existing_storage(meta["storage"], out))
    slots = [t.user_attrs["slot"] for t in study.get_trials()]
    assert len(slots) == len(set(slots)) <= 10, sorted(slots)
