"""Calibration against hand computations and a naive reference; temperature scaling against a
grid search and in the trainer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trickbag.calibration import (
    TemperatureScaled,
    accuracy,
    calibration_bins,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)


def naive_ece(probs, targets, bins):
    """The textbook loop: bins (m/M, (m+1)/M], weight |B|/N times |acc - conf|."""
    conf, pred = probs.max(1)
    total = 0.0
    for m in range(bins):
        lo, hi = m / bins, (m + 1) / bins
        inside = [i for i in range(len(conf)) if lo < conf[i].item() <= hi]
        if inside:
            acc = sum(float(pred[i] == targets[i]) for i in inside) / len(inside)
            avg = sum(conf[i].item() for i in inside) / len(inside)
            total += len(inside) / len(conf) * abs(acc - avg)
    return total


def test_ece_by_hand():
    # confidences 0.95, 0.85, 0.6, 0.55 with 3 bins: (1/3, 2/3] holds 0.6 (right) and 0.55 (wrong);
    # (2/3, 1] holds 0.95 (right) and 0.85 (wrong)
    p = torch.tensor([[0.95, 0.05], [0.15, 0.85], [0.6, 0.4], [0.45, 0.55]])
    y = torch.tensor([0, 0, 0, 0])
    expected = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(0.5 - 0.575)
    assert expected_calibration_error(p, y, bins=3).item() == pytest.approx(expected)
    b = calibration_bins(p, y, bins=3)
    assert b.counts.tolist() == [0, 2, 2]
    assert b.accuracy.tolist() == [0.0, 0.5, 0.5]
    # a confidence exactly on an edge belongs to the bin below (right-closed bins)
    edge = torch.tensor([[0.5, 0.5], [0.75, 0.25]])
    assert calibration_bins(edge, torch.tensor([0, 0]), bins=4).counts.tolist() == [0, 1, 1, 0]
    assert expected_calibration_error(torch.eye(3), torch.arange(3)).item() == 0.0  # confident and right


def test_ece_matches_the_naive_loop_on_random_predictions(gen):
    p = torch.randn(300, 7, generator=gen).mul(2).softmax(1)
    y = torch.randint(0, 7, (300,), generator=gen)
    for bins in (1, 10, 15):
        assert expected_calibration_error(p, y, bins).item() == pytest.approx(naive_ece(p.double(), y, bins), abs=1e-12)
    with pytest.raises(ValueError, match="bins must be an integer >= 1, got 0"):
        expected_calibration_error(p, y, 0)
    with pytest.raises(ValueError, match=r"targets must be \(N,\) = \(300,\)"):
        expected_calibration_error(p, y[:10])


def test_nll_and_accuracy_by_hand():
    p = torch.tensor([[0.7, 0.3], [0.4, 0.6]])
    y = torch.tensor([0, 0])
    assert negative_log_likelihood(p, y).item() == pytest.approx(-(torch.tensor(0.7).log() + torch.tensor(0.4).log()).item() / 2, rel=1e-6)
    assert accuracy(p, y).item() == 0.5


def test_temperature_minimises_the_nll_against_a_grid(gen):
    z = torch.randn(1000, 4, generator=gen, dtype=torch.float64) * 3
    y = torch.multinomial((z / 2.5).softmax(1), 1, generator=gen).squeeze(1)  # truly calibrated at T = 2.5
    t = fit_temperature(z, y)
    grid = torch.linspace(0.5, 6, 551, dtype=torch.float64)
    nll = torch.stack([F.cross_entropy(z / g, y) for g in grid])
    assert t == pytest.approx(grid[nll.argmin()].item(), abs=1e-2)
    assert F.cross_entropy(z / t, y) <= nll.min() + 1e-9
    model = TemperatureScaled(torch.nn.Linear(3, 2), t)
    assert "temperature=" in repr(model) and set(model.state_dict()) >= {"temperature"}
    with pytest.raises(ValueError, match="temperature must be > 0"):
        TemperatureScaled(torch.nn.Linear(3, 2), 0.0)


def test_temperature_scaling_trick_calibrates_the_test_split():
    from trickbag.train.build import build_run
    from trickbag.train.config import load_config

    raw = {"data": {"name": "synthetic", "options": {"num_train": 400, "num_test": 300, "shape": [8], "num_classes": 3,
                                                     "noise": 1.5}, "val_fraction": 0.3, "batch_size": 32},
           "model": {"name": "mlp", "hidden": [64]}, "optimizer": {"name": "adamw", "lr": 0.03},
           "train": {"epochs": 10, "progress": False, "device": "cpu", "checkpoint_every_epochs": None}}
    plain = build_run(load_config(raw)).fit()
    scaled_run = build_run(load_config({**raw, "tricks": ["temperature_scaling"]}))
    scaled = scaled_run.fit()
    t = scaled["final"]["temperature"]
    assert t > 1.0  # an over-fitted MLP is over-confident
    assert scaled["test"]["test_acc"] == plain["test"]["test_acc"]  # the argmax never changes
    assert scaled["test"]["test_loss"] < plain["test"]["test_loss"]
    assert scaled["final"]["calibrated_val_loss"] < scaled["final"]["val_loss"]
