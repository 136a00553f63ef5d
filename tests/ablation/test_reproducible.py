"""The same slot gives the same numbers whatever ran before it in the worker (issue 20 item 11):
seeds come from the slot, not from the order trials are claimed, and no state of one trial (data
cache, normaliser, generators, thread count) leaks into the next."""

from __future__ import annotations

import torch

from trickbag.ablation.arms import parse_tricks
from trickbag.ablation.runner import AblationSpec
from trickbag.ablation.trial import run_trial
from trickbag.train.config import load_config

BASE = {
    "data": {"name": "synthetic", "options": {"num_train": 300, "num_test": 32, "shape": [1, 6, 6], "num_classes": 3,
                                                "noise": 1.5}, "batch_size": 32, "val_fraction": 0.2, "subset": 160,
             "label_noise": 0.2},
    "model": {"name": "mlp", "hidden": [16]},
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "train": {"epochs": 2, "threads": 1},
}


def _run(spec: AblationSpec, arm: int, seed: int) -> dict:
    out = run_trial({"config": spec.arm_config(spec.arms[arm], seed), "metric": "val_acc"})
    assert "failure" not in out, out.get("failure")
    return out


def test_a_slot_gives_the_same_numbers_in_any_order():
    spec = AblationSpec(load_config(BASE), parse_tricks("mixup:alpha=0.4"), 6, vary_data=True)
    threads = torch.get_num_threads()
    try:
        first = _run(spec, 1, 2)  # mixup, seed 2, first in this process
        # then five other slots (other arms, other data draws: the data cache evicts), a thread count
        # changed by hand, and the same slot again
        for arm, seed in [(0, 0), (1, 0), (0, 4), (1, 5), (0, 3)]:
            _run(spec, arm, seed)
        torch.set_num_threads(2)
        again = _run(spec, 1, 2)
    finally:
        torch.set_num_threads(threads)
    assert again["value"] == first["value"]
    assert again["history"] == first["history"]
    other = _run(spec, 1, 3)  # and a different slot is a different trial (the test can fail)
    assert other["history"] != first["history"]


def test_the_demo_pins_what_changes_its_numbers():
    """The demo's config fixes the thread count (it changes the rounding of sums) and draws each
    seed's data (so its three-run check varies the data too)."""
    from pathlib import Path

    import yaml

    cfg = yaml.safe_load((Path(__file__).parents[2] / "configs" / "fashion_mnist_demo.yaml").read_text())
    assert cfg["train"]["threads"] == 1
    assert cfg["ablation"]["vary_data"] is True
