"""What held in the review of issue 23, kept tested: kills inside the writes of `ensemble` and
of factorial and adaptive ablations end with the numbers of an uninterrupted run, a full disk
during a factorial ablation is one line and the rerun completes it, and YAML's
``!!python/object`` tags are never constructed (configs, overrides, search spaces)."""

from __future__ import annotations

import json

import pytest

from trickbag.cli import main

from .helpers import assert_killed, forked_cli, write_config

NOISY = {"name": "synthetic", "options": {"num_train": 200, "num_test": 60, "shape": [16], "num_classes": 3,
                                          "noise": 3.0}, "batch_size": 16}


def ablation_numbers(out):
    """The trial values by slot and the table: what a rerun must reproduce."""
    import optuna

    from trickbag import _study

    meta = json.loads((out / "ablation.json").read_text())
    trials = optuna.load_study(study_name=meta["study"], storage=_study.storage_url(meta["storage"], out)).get_trials()
    done = sorted((t.user_attrs["slot"], t.value) for t in trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert len(done) == len({s for s, _ in done}), "a slot completed twice"
    return done, (out / "table.txt").read_text()


FACTORIAL = ["--tricks", "flooding:b=0.0,label_smoothing", "--mode", "factorial", "--seeds", "1"]
ADAPTIVE = ["--tricks", "label_smoothing", "--seeds", "auto", "--budget", "9"]


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    folder = tmp_path_factory.mktemp("held")
    config = write_config(folder, {"epochs": 1, "checkpoint_every_epochs": None}, tricks=[], data=NOISY)
    found = {}
    for name, extra in (("factorial", FACTORIAL), ("adaptive", ADAPTIVE)):
        out = folder / name
        assert main(["ablate", "--config", str(config), *extra, "--quiet", "--out", str(out)]) == 0
        found[name] = ablation_numbers(out)
    return config, found


# atomic writes of an ablation: ablation.json first, then (after every trial) the report's files
@pytest.mark.parametrize("design, kill", [("factorial", "write:1"), ("factorial", "write:3"), ("adaptive", "write:2")])
def test_an_ablation_killed_inside_a_write_reruns_to_the_same_numbers(design, kill, references, tmp_path):
    config, reference = references
    argv = ["ablate", "--config", str(config), *(FACTORIAL if design == "factorial" else ADAPTIVE), "--quiet",
            "--out", str(tmp_path / "out")]
    assert_killed(forked_cli(argv, kill=kill))
    assert main(argv) == 0
    assert ablation_numbers(tmp_path / "out") == reference[design]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_during_a_factorial_ablation_is_one_line_and_the_rerun_completes_it(references, tmp_path):
    config, reference = references
    out, err = tmp_path / "out", tmp_path / "stderr"
    argv = ["ablate", "--config", str(config), *FACTORIAL, "--quiet", "--out", str(out)]
    # the study database outgrows 64 kB part way (a file-size limit fails writes as a full disk does)
    assert forked_cli(argv, err=err, file_size_limit=64 * 1024) == 2
    lines = [line for line in err.read_text().splitlines() if ": starting (" not in line]
    assert len(lines) == 1 and "Traceback" not in err.read_text(), err.read_text()
    assert "file-size limit" in lines[0] or "full" in lines[0], lines[0]
    assert main(argv) == 0
    assert ablation_numbers(out) == reference["factorial"]


# its atomic writes: the probe of the folder, reliability.png, ensemble.json, logits.pt
@pytest.mark.parametrize("kill", ["write:2", "write:3", "write:4"])
def test_ensemble_killed_inside_a_write_reruns_to_the_same_numbers(kill, tmp_path):
    run = tmp_path / "run"
    config = write_config(tmp_path, {"epochs": 1}, tricks=[], data=NOISY)
    assert main(["train", "--config", str(config), "--out", str(run)]) == 0
    argv = ["ensemble", str(run), str(run / "checkpoints" / "last.pt"), "--out"]
    assert main([*argv, str(tmp_path / "reference")]) == 0
    assert_killed(forked_cli([*argv, str(tmp_path / "e")], kill=kill))
    assert main([*argv, str(tmp_path / "e")]) == 0
    import torch

    ref, again = (json.loads((tmp_path / f / "ensemble.json").read_text()) for f in ("reference", "e"))
    assert again["rows"] == ref["rows"]
    ref, again = (torch.load(tmp_path / f / "logits.pt", weights_only=True) for f in ("reference", "e"))
    assert len(again["logits"]) == len(ref["logits"]) == 2 and torch.equal(again["targets"], ref["targets"])
    assert all(torch.equal(a, b) for a, b in zip(again["logits"], ref["logits"]))
    assert not [p for p in (tmp_path / "e").iterdir() if p.name.endswith(".tmp")]


EVIL = "!!python/object/apply:builtins.open [{mark}, w]"


@pytest.mark.parametrize("where", ["config", "override", "search space"])
def test_python_object_yaml_tags_are_never_constructed(where, tmp_path, capsys):
    mark = tmp_path / "mark"
    evil = EVIL.format(mark=json.dumps(str(mark)))
    config = write_config(tmp_path, {"epochs": 1})
    if where == "config":
        (tmp_path / "evil.yaml").write_text(config.read_text() + f"\nschedule: {evil}\n")
        argv = ["train", "--config", str(tmp_path / "evil.yaml"), "--out", str(tmp_path / "run")]
    elif where == "override":
        argv = ["train", "--config", str(config), f"train.seed={evil}", "--out", str(tmp_path / "run")]
    else:
        (tmp_path / "space.yaml").write_text(f"lr: {evil}\n")
        argv = ["search", "--config", str(config), "--space", str(tmp_path / "space.yaml"), "--out", str(tmp_path / "s")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "python/object" in err, err
    assert not mark.exists()
