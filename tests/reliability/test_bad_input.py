"""Bad input gets one clear line naming the value and what is valid, exit code 2, and nothing
written (issue 16, items 9-11)."""

from __future__ import annotations

import pytest

from trickbag.cli import main

from .helpers import write_config


def one_clear_line(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("override, needles", [
    ("optimizer.momentum=fast", ("optimizer.momentum", "'fast'", "number")),
    ("optimizer.lr=fast", ("optimizer.lr", "'fast'", "number")),
    ("optimizer.lrr=0.1", ("'lrr'", "did you mean 'lr'", " lr,", "weight_decay")),
    ("optimizer.betas=[0.9]", ("betas",)),
    ("train.seed=abc", ("train.seed", "'abc'", "integer >= 0")),
    ("train.threads=-1", ("train.threads", "-1", "integer >= 1")),
    ("data.subset=-3", ("data.subset", "-3", "integer >= 1")),
    ("train.checkpoint_every_steps=0", ("train.checkpoint_every_steps", "0", "integer >= 1")),
    ("train.epochs=0", ("train.epochs", "integer >= 1")),
    ("train.device=fast", ("train.device", "'fast'", "'cpu'")),
    ("data.batch_size=1.5", ("data.batch_size", "1.5")),
    ("train.nan_guard=maybe", ("train.nan_guard", "true or false")),
])
def test_bad_train_values_fail_before_the_run_directory_exists(override, needles, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(write_config(tmp_path)), "--out", str(out), override]) == 2
    one_clear_line(capsys.readouterr().err, *needles)
    assert not out.exists()
    # and the same --out is still usable: nothing half-written blocks it
    assert main(["train", "--config", str(write_config(tmp_path, {"epochs": 1})), "--out", str(out)]) == 0


@pytest.mark.parametrize("verb", ["ablate", "search"])
def test_zero_workers_is_refused(verb, tmp_path, capsys):
    config = write_config(tmp_path, {"epochs": 1, "checkpoint_every_epochs": None})
    space = tmp_path / "space.yaml"
    space.write_text("lr: loguniform(0.001, 0.1)\n")
    extra = ["--tricks", "ema"] if verb == "ablate" else ["--space", str(space), "--trials", "3"]
    out = tmp_path / "out"
    assert main([verb, "--config", str(config), *extra, "--workers", "0", "--out", str(out), "--quiet"]) == 2
    one_clear_line(capsys.readouterr().err, "workers must be an integer >= 1, got 0")
    assert not out.exists()
