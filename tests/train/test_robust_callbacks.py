"""Robustness in the trainer: val_robust_acc against a hand-computed attack on pixels, adversarial
batches on the pixel scale, catastrophic overfitting caught on a planted case, and the metric in
run results and ablations."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from trickbag.augment import fit_normalizer
from trickbag.data import ArrayDataset, DeviceLoader
from trickbag.train import Trainer
from trickbag.train.callbacks import AdversarialTraining, Callback, CatastrophicOverfittingGuard, RobustAccuracy


def uint8_images(gen, n=256):
    """Two classes of 4x4 grey uint8 images: bright left half or bright right half, plus noise."""
    y = torch.randint(0, 2, (n,), generator=gen)
    base = torch.zeros(n, 1, 4, 4)
    base[y == 0, :, :, :2] = 0.2
    base[y == 1, :, :, 2:] = 0.2
    x = (base + 0.6 * torch.rand(n, 1, 4, 4, generator=gen)).clamp(0, 1)
    return ArrayDataset((x * 255).round().to(torch.uint8), y)


def linear_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 2))


def test_val_robust_acc_equals_the_hand_computed_attack_on_pixels(gen):
    train, val = uint8_images(gen), uint8_images(gen, 200)
    norm = fit_normalizer(train.inputs)
    model = linear_model()
    trainer = Trainer(model, DeviceLoader(train, 32, normalize=norm), val_data=DeviceLoader(val, 64, shuffle=False, normalize=norm),
                      callbacks=[RobustAccuracy(eps=0.1, steps=20, max_examples=None)],
                      optimizer={"name": "sgd", "lr": 0.1}, epochs=2, progress=False)
    history = trainer.fit()
    assert all("val_robust_acc" in h for h in history)
    # by hand: the model on [0, 1] pixels is linear, W' = W / std, b' = b - W mean / std; the
    # worst L-infinity move within [0, 1] lowers the margin by sum |dW'| min(eps, room)
    mean, std = norm.mean.flatten(), norm.std.flatten()
    w = model[1].weight.detach().double() / std.double()
    b = model[1].bias.detach().double() - (model[1].weight.detach().double() * mean.double() / std.double()).sum(1)
    pixels = val.inputs.double().flatten(1) / 255
    d = w[val.targets] - w[1 - val.targets]
    margin = (d * pixels).sum(1) + b[val.targets] - b[1 - val.targets]
    room = torch.where(d > 0, pixels, 1 - pixels)
    worst = margin - (d.abs() * torch.clamp(room, max=0.1)).sum(1)
    expected = (worst > 0).double().mean().item()
    assert history[-1]["val_robust_acc"] == pytest.approx(expected, abs=1e-9)
    assert history[-1]["val_robust_acc"] < history[-1]["val_acc"] - 0.05


class Before(Callback):
    def __init__(self):
        self.batches = []

    def on_batch_start(self, state):
        self.batches.append(state.inputs.clone())


class After(Before):
    pass


@pytest.mark.parametrize("method", ["fast_fgsm", "pgd"])
def test_adversarial_batches_stay_within_eps_on_the_pixel_scale(gen, method):
    train = uint8_images(gen)
    norm = fit_normalizer(train.inputs)
    before, after = Before(), After()
    adv = AdversarialTraining(method, eps=0.1, steps=3, ratio=1.0, space="data")
    Trainer(linear_model(), DeviceLoader(train, 32, normalize=norm), callbacks=[before, adv, after],
            optimizer={"name": "sgd", "lr": 0.1}, steps=5, progress=False).fit()
    for clean, attacked in zip(before.batches, after.batches):
        p0 = clean * norm.std + norm.mean
        p1 = attacked * norm.std + norm.mean
        assert (p1 - p0).abs().max() <= 0.1 + 1e-5
        assert p1.min() >= -1e-5 and p1.max() <= 1 + 1e-5
        assert (p1 - p0).abs().mean() > 0.02  # it did move


class Planted(nn.Module):
    """Two phases of one classifier of points (x1, x2) in [0, 1]^2, class x1 > 0.5.

    lam = 0: z = s (x1 - 0.5): plainly linear; an L-infinity attack of radius eps succeeds
    exactly on the points within eps of the boundary, for FGSM and PGD alike.
    lam = 1: z = sign(x1 - 0.5) (b + A cos(2 pi k (x2 - 0.5))): at the data (x2 = 0.5) the input
    gradient is exactly zero, so FGSM cannot move and FGSM accuracy is perfect, but a random start
    off x2 = 0.5 finds the troughs of the cosine, where the margin is b - A < 0: PGD accuracy
    is zero. The signature of catastrophic overfitting, planted."""

    def __init__(self, s=10.0, b=1.0, a=2.0, k=10):
        super().__init__()
        self.s = nn.Parameter(torch.tensor(s))
        self.register_buffer("lam", torch.tensor(0.0))
        self.b, self.a, self.k = b, a, k

    def forward(self, x):
        u = x[:, 0] - 0.5
        masked = torch.sign(u) * (self.b + self.a * torch.cos(2 * math.pi * self.k * (x[:, 1] - 0.5)))
        z = (1 - self.lam) * self.s * u + self.lam * masked
        return torch.stack([-z / 2, z / 2], 1)


class Plant(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, state):
        if state.epoch == self.epoch:
            state.raw_model.lam.fill_(1.0)


def planted_data():
    x1 = 0.025 + 0.05 * torch.arange(20.0)  # two of twenty points lie within eps = 0.05 of the boundary
    x = torch.stack([x1, torch.full_like(x1, 0.5)], 1)
    return ArrayDataset(x, (x1 > 0.5).long())


def planted_trainer(guard, plant_at=2, epochs=6):
    data = planted_data()
    model = Planted()
    return Trainer(model, DeviceLoader(data, 10), val_data=DeviceLoader(data, 20, shuffle=False),
                   callbacks=[Plant(plant_at), guard], optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                   epochs=epochs, progress=False)


def test_catastrophic_overfitting_on_a_planted_case_stops_warns_and_restores():
    guard = CatastrophicOverfittingGuard(eps=0.05, clamp=(0.0, 1.0), probe_examples=20)
    trainer = planted_trainer(guard)
    with pytest.warns(RuntimeWarning, match="catastrophic overfitting.*random start"):
        history = trainer.fit()
    assert [h["probe_pgd_acc"] for h in history] == [0.9, 0.9, 0.0]
    assert [h["probe_fgsm_acc"] for h in history] == [0.9, 0.9, 1.0]
    assert len(history) == 3 and trainer.state.stop_training
    assert "catastrophic overfitting" in trainer.state.stop_reason and "0.900" in trainer.state.stop_reason
    assert trainer.state.raw_model.lam.item() == 0.0  # the weights of the best robust accuracy are back


def test_catastrophic_overfitting_can_only_warn_and_stays_quiet_without_it():
    guard = CatastrophicOverfittingGuard(eps=0.05, clamp=(0.0, 1.0), probe_examples=20, action="warn")
    with pytest.warns(RuntimeWarning, match="catastrophic overfitting"):
        history = planted_trainer(guard, epochs=4).fit()
    assert len(history) == 4 and guard.detected
    quiet = CatastrophicOverfittingGuard(eps=0.05, clamp=(0.0, 1.0), probe_examples=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = planted_trainer(quiet, plant_at=99, epochs=3).fit()
    assert len(history) == 3 and quiet.detected is None


def test_robust_accuracy_reaches_run_results_and_ablation_metrics(tmp_path):
    from trickbag.ablation.trial import final_metric
    from trickbag.data import synthetic
    from trickbag.train.build import build_run
    from trickbag.train.config import load_config

    cfg = load_config({
        "data": {"name": "synthetic", "options": {"num_train": 256, "num_test": 64, "shape": [1, 6, 6], "num_classes": 3},
                 "batch_size": 32},
        "model": {"name": "small_cnn", "width": 4},
        "tricks": [{"robust_accuracy": {"eps": 0.5, "steps": 5}}, "fast_fgsm:eps=0.5"],
        "train": {"epochs": 2, "progress": False, "checkpoint_every_epochs": None},
    })
    results = build_run(cfg, run_dir=tmp_path).fit()
    value, missing = final_metric(results, "val_robust_acc")
    assert missing is None and 0.0 <= value <= results["final"]["val_acc"]
    assert 0.0 <= results["test"]["test_robust_acc"] <= results["test"]["test_acc"]
    assert "val_robust_acc" in (tmp_path / "results.json").read_text()
    del synthetic
