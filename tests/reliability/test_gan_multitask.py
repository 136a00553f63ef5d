"""Reliability of `trickbag gan` and `trickbag multitask` (issue 23, item 4): atomic results
under SIGKILL and a full disk, results that belong to their config, sizes checked before
anything runs, one line instead of a traceback, orphan temporary files removed."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from trickbag.cli import main

from .helpers import assert_killed, forked_cli

# ---- multitask -----------------------------------------------------------------------------------

MT_CONFIG = {
    "data": {"name": "synthetic", "options": {"num_train": 200, "num_test": 60, "shape": [8], "num_classes": 4}},
    "model": {"name": "mlp", "hidden": [16]}, "optimizer": {"name": "adamw", "lr": 0.01},
    "train": {"epochs": None, "steps": 6, "threads": 1},
}


def mt_argv(folder: Path, out: Path, *extra: str) -> list[str]:
    config = folder / "mt.yaml"
    config.write_text(yaml.safe_dump(MT_CONFIG))
    return ["multitask", "--config", str(config), "--task", "coarse=0,0,1,1", "--subsets", "40", "--seeds", "2",
            "--out", str(out), "--quiet", *extra]


def trials(out: Path) -> dict:
    return json.loads((out / "multitask.json").read_text())["trials"]


def accuracies(out: Path) -> dict:
    return {k: t["acc"] for k, t in trials(out).items()}


@pytest.fixture(scope="module")
def mt_reference(tmp_path_factory):
    """An uninterrupted multitask run: 2 seeds x 4 arms = 8 trials."""
    folder = tmp_path_factory.mktemp("mt-reference")
    out = folder / "mt"
    assert main(mt_argv(folder, out)) == 0
    assert len(trials(out)) == 8
    return out


def test_multitask_killed_in_its_first_write_of_multitask_json_reruns(tmp_path, mt_reference):
    """A SIGKILL in the middle of the first write of multitask.json (before: 0 bytes were left
    and the rerun failed with "Expecting value"): the same command finishes with the same
    numbers and removes the killed write's temporary file."""
    out = tmp_path / "mt"
    # the first atomic write is the folder's probe, the second the first trial's multitask.json
    assert_killed(forked_cli(mt_argv(tmp_path, out), kill="write:2"))
    assert not (out / "multitask.json").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".multitask.json.")], list(out.iterdir())
    assert main(mt_argv(tmp_path, out)) == 0
    assert accuracies(out) == accuracies(mt_reference)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_multitask_on_a_full_disk_keeps_its_finished_trials(tmp_path, mt_reference):
    """A write that fails for want of space (here RLIMIT_FSIZE, EFBIG) leaves the last complete
    multitask.json: the trials saved before survive and the rerun runs only the others (before:
    the file was torn and the rerun failed, or finished trials were lost)."""
    saved = json.loads((mt_reference / "multitask.json").read_text())
    keep = 4
    head = {**saved, "trials": dict(list(saved["trials"].items())[:keep])}
    limit = len(json.dumps(head, indent=1)) + 100  # room for 4 trials, not for a 5th (~250 bytes each)
    out, err = tmp_path / "mt", tmp_path / "err.txt"
    assert forked_cli(mt_argv(tmp_path, out), err=err, file_size_limit=limit) == 2
    message = err.read_text()
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    kept = trials(out)  # valid JSON
    assert len(kept) == keep
    assert main(mt_argv(tmp_path, out)) == 0
    after = trials(out)
    assert {k: after[k] for k in kept} == kept  # not run again (their wall times are the saved ones)
    assert accuracies(out) == accuracies(mt_reference)


def test_multitask_refuses_results_of_another_config_naming_the_keys(tmp_path, mt_reference, capsys):
    out = Path(shutil.copytree(mt_reference, tmp_path / "mt"))
    before = (out / "multitask.json").read_bytes()
    assert main(mt_argv(tmp_path, out, "train.steps=7", "optimizer.lr=0.02")) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "another config" in err, err
    assert "config.train.steps (6 -> 7)" in err and "config.optimizer.lr (0.01 -> 0.02)" in err, err
    assert (out / "multitask.json").read_bytes() == before
    # more seeds with the same config is the same study: it reuses the 8 trials
    assert main(mt_argv(tmp_path, out, "--seeds", "3")) == 0
    assert len(trials(out)) == 12 and {k: v for k, v in accuracies(out).items() if "|" in k and
                                       int(k.split("|")[1]) < 2} == accuracies(mt_reference)


@pytest.mark.parametrize("extra, needle", [
    (["--subsets=-5"], "a training-set size in subsets must be an integer >= 1, got -5"),
    (["--subsets", "10000000"], "subsets [10000000] exceed the 180 training examples"),
    (["--subsets", "abc"], "--subsets takes comma-separated training-set sizes such as 500,5000, got 'abc'"),
    (["--main-labels", "-5"], "main_labels must be an integer >= 1, got -5"),
    (["--seeds", "0"], "seeds must be an integer >= 1, got 0"),
])
def test_multitask_refuses_nonsense_sizes_before_anything_runs(extra, needle, tmp_path, capsys):
    out = tmp_path / "mt"
    assert main(mt_argv(tmp_path, out, *extra)) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert not out.exists()


def test_multitask_subsets_name_the_valid_range(tmp_path, capsys):
    assert main(mt_argv(tmp_path, tmp_path / "mt", "--subsets", "40,10000000")) == 2
    err = capsys.readouterr().err
    assert "[10000000]" in err and "valid sizes are 1 to" in err, err


# ---- gan -------------------------------------------------------------------------------------------

GAN_CONFIG = """
data: {name: ring, modes: 8}
model: {name: mlp, hidden: 16, depth: 2, z_dim: 2}
methods: [gan]
seeds: 3
train: {steps: 60, batch_size: 32, eval_every: 30, log_every: 1, threads: 1}
eval: {samples: 100}
"""


def gan_argv(folder: Path, out: Path, *extra: str, config: str = GAN_CONFIG) -> list[str]:
    path = folder / "gan.yaml"
    path.write_text(config)
    return ["gan", "--config", str(path), "--out", str(out), "--quiet", *extra]


def runs(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())["runs"]


def test_gan_on_a_full_disk_keeps_results_json_whole(tmp_path):
    """results.json grows by ~11 kB a run (a history row per step); a 27 kB file-size limit lets
    two runs' results be written and fails the third's (before: results.json was torn at the
    limit and the rerun failed)."""
    out, err = tmp_path / "gan", tmp_path / "err.txt"
    assert forked_cli(gan_argv(tmp_path, out), err=err, file_size_limit=27_000) == 2
    message = err.read_text()
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    kept = runs(out)
    assert sorted(kept) == ["gan@0", "gan@1"]
    assert main(gan_argv(tmp_path, out)) == 0
    after = runs(out)
    assert sorted(after) == ["gan@0", "gan@1", "gan@2"]
    assert {k: after[k] for k in kept} == kept  # kept, not trained again
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def numbers(out: Path) -> dict:
    """Each run's history and final metrics (the timings left out)."""
    def untimed(row: dict) -> dict:
        return {k: v for k, v in row.items() if not k.endswith("_time")}

    return {k: ([untimed(h) for h in r["history"]], untimed(r["final"])) for k, r in runs(out).items()}


def test_gan_killed_while_writing_results_json_reruns_to_the_same_numbers(tmp_path):
    small = GAN_CONFIG.replace("seeds: 3", "seeds: 2").replace("steps: 60", "steps: 8").replace("eval_every: 30",
                                                                                                "eval_every: 4")
    reference = tmp_path / "reference"
    assert main(gan_argv(tmp_path, reference, config=small)) == 0
    out = tmp_path / "gan"
    # atomic writes: the folder's probe, config.yaml, then per run its samples PNG and results.json
    assert_killed(forked_cli(gan_argv(tmp_path, out, config=small), kill="write:6"))
    assert sorted(runs(out)) == ["gan@0"] and [p for p in out.iterdir() if p.name.startswith(".results.json.")]
    assert main(gan_argv(tmp_path, out, config=small)) == 0
    assert numbers(out) == numbers(reference)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_gan_removes_orphan_temporary_files_and_names_changed_keys(tmp_path, capsys):
    out = tmp_path / "gan"
    small = GAN_CONFIG.replace("seeds: 3", "seeds: 1").replace("steps: 60", "steps: 4").replace("eval_every: 30",
                                                                                                 "eval_every: 2")
    out.mkdir()
    orphan = out / f".report.md.0badcafe.{_dead_pid()}@{socket.gethostname()}.tmp"  # a writer killed mid-write
    orphan.write_text("half a rep")
    assert main(gan_argv(tmp_path, out, config=small)) == 0
    assert not orphan.exists() and (out / "report.md").exists()
    kept = (out / "results.json").read_bytes()
    capsys.readouterr()
    assert main(gan_argv(tmp_path, out, "train.steps=6", "eval.sds=2.5", config=small)) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "another config" in err, err
    assert "train.steps (4 -> 6)" in err and "eval.sds (3.0 -> 2.5)" in err, err
    assert (out / "results.json").read_bytes() == kept


@pytest.mark.parametrize("extra, text, needle", [
    (["train.threads=-1"], None, "train.threads must be an integer >= 1, got -1"),
    (["train.device=cdua"], None, "train.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'cdua'"),
    (["eval.samples=0"], None, "eval.samples must be an integer >= 1, got 0"),
    (["eval.min_share=2"], None, "eval.min_share must be in [0.0, 1.0], got 2"),
    ([], "data: [1, 2]\n", "section 'data' is a name or a mapping"),
    ([], "methods: [{wgan_gp: 3}]\n", "method 'wgan_gp': its settings are a mapping"),
    ([], "eval: {samples: many}\n", "eval.samples must be an integer >= 1, got 'many'"),
])
def test_gan_bad_values_are_one_line_before_anything_runs(extra, text, needle, tmp_path, capsys):
    out = tmp_path / "gan"
    assert main(gan_argv(tmp_path, out, *extra, config=text or GAN_CONFIG)) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert not out.exists()


class Planted:
    """Unpickling this creates a file: proof that a pickle ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


FMNIST_GAN = """
data: {name: fashion_mnist, subset: 200}
model: {name: dcgan, width: 4, z_dim: 8}
methods: [gan]
seeds: 1
train: {steps: 2, batch_size: 16, eval_every: 2, log_every: 2, threads: 1}
eval: {samples: 50, real_samples: 100, classifier_epochs: 1, classifier_width: 4, classifier_subset: 200}
"""


@pytest.mark.parametrize("damage", ["truncated", "malicious"])
def test_gan_damaged_or_malicious_classifier_pt_is_one_line(damage, tmp_path, capsys):
    from trickbag.data.vision import DEBIAN_FMNIST

    if not (DEBIAN_FMNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    out = tmp_path / "gan"
    out.mkdir()
    proof = tmp_path / "proof-that-code-ran"
    if damage == "truncated":
        torch.save({"model": {"w": torch.randn(64, 64)}, "info": {"test_acc": 0.5}}, out / "classifier.pt")
        data = (out / "classifier.pt").read_bytes()
        (out / "classifier.pt").write_bytes(data[: len(data) // 2])
    else:
        torch.save({"model": Planted(proof), "info": {}}, out / "classifier.pt")
    assert main(gan_argv(tmp_path, out, config=FMNIST_GAN)) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "classifier.pt" in err and "Traceback" not in err, err
    if damage == "truncated":
        assert "damaged" in err and "delete" in err, err
    else:
        assert "refusing to load" in err and "a pickle can run code" in err, err
    assert not proof.exists()
