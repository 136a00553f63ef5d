"""Reliability of the newer tools and of the command line (issue 23, item 4): a run folder a
kill left before its first file, bad YAML in overrides, overrides anywhere on the line."""

from __future__ import annotations

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
