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
