"""Reliability of the newer tools and of the command line (issue 23, item 4): a run folder a
kill left before its first file, bad YAML in overrides, overrides anywhere on the line."""

from __future__ import annotations

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
