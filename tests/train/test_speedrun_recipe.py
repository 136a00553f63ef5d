"""The fast base is airbench94's training: a few fp32 steps of ``configs/cifar10_speedrun.yaml``'s
trainer (shrunk: narrow network, 256 synthetic images, batch 32) against the record's update
written out plainly below, from the same initial weights and the same batches.

The reference follows airbench94.py (Jordan 2024) step by step: the summed label-smoothed loss;
the learning rate per example in the record's "kilostep" units, ``11.5 / (1024 (1 + 1 / (1 -
0.85)))``; weight decay as a decoupled shrink of ``0.0153 * batch / kilostep`` per step (torch's
coupled ``weight_decay = shrink / lr``); BatchNorm shifts at 64x the learning rate and 1/64 the
coupled decay (the same shrink); Nesterov momentum 0.85 written out by hand; the whitening bias
trained for the first epochs only; the Lookahead-style average that starts at a given epoch as a
copy of the weights, is updated every fifth step with decay ``0.95^5 (t / T)^3`` and copied back
into the network after each update and at the end of every epoch; the final evaluation averaging
the mirror and the two 1-pixel shifts. One deliberate difference, documented in the
``one_cycle`` card: the schedule is torch's OneCycleLR (peak at ``0.23 T - 1``), where the record
interpolates on its own grid (peak at ``int(0.23 T)``); the reference uses the former.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trickbag.data import Splits, synthetic
from trickbag.models import speedrun_cnn
from trickbag.train.build import build_run
from trickbag.train.callbacks import Callback
from trickbag.train.callbacks.initialization import training_images
from trickbag.train.config import load_config

ROOT = Path(__file__).parents[2]

# airbench94's hyper-parameters, as the record gives them
HYP_LR = 11.5              # learning rate per 1,024 examples
HYP_WD = 0.0153            # weight decay per 1,024 examples, decoupled from the learning rate
MOMENTUM = 0.85            # Nesterov
BIAS_SCALER = 64.0         # BatchNorm shifts: learning rate x 64, the same shrink
LABEL_SMOOTHING = 0.2
BN_MOMENTUM, BN_EPS = 0.6, 1e-12  # the record's convention: torch's momentum is 1 - 0.6
EMA_DECAY_BASE, EMA_EVERY, EMA_POW, EMA_START_EPOCHS = 0.95, 5, 3.0, 3
WHITEN_BIAS_EPOCHS, WHITEN_IMAGES, WHITEN_EPS = 3, 5000, 5e-4
SCHEDULE_START, SCHEDULE_PEAK_AT, SCHEDULE_END = 0.2, 0.23, 0.07
TTA_TRANSLATE = 1

# shrunk for a CPU test: 8 steps an epoch, 3 epochs; the average starts after one epoch and the
# whitening bias trains for two, so that every part of the cadence happens within 24 steps
BATCH, NUM_TRAIN, EPOCHS, WIDTHS = 32, 256, 3, [8, 16, 16]
SHRUNK_EMA_START, SHRUNK_BIAS_EPOCHS, SHRUNK_WHITEN_IMAGES = 1, 2, 200


def _trick(cfg, name: str) -> dict:
    return next(t.params for t in cfg.tricks if t.name == name)


def test_the_config_states_the_records_constants():
    """Each constant of the config against the record's (before the test shrinks the run)."""
    cfg = load_config(ROOT / "configs" / "cifar10_speedrun.yaml")
    kilostep = 1024 * (1 + 1 / (1 - MOMENTUM))
    opt = cfg.optimizer
    assert opt["name"] == "sgd" and opt["nesterov"] is True and opt["momentum"] == MOMENTUM
    assert cfg.data.batch_size == 1024
    # lr per mean-loss step = lr per example x batch; shrink per step = lr x coupled decay
    assert opt["lr"] == pytest.approx(HYP_LR / kilostep * 1024, rel=1e-15)
    assert opt["lr"] * opt["weight_decay"] == pytest.approx(HYP_WD * 1024 / kilostep, rel=1e-15)
    assert opt["decay_norm_and_bias"] is True
    scales = opt["group_scales"]["norm_bias"]
    assert scales["lr"] == BIAS_SCALER and scales["lr"] * scales["weight_decay"] == 1.0  # same shrink
    assert _trick(cfg, "label_smoothing") == {"smoothing": LABEL_SMOOTHING}
    assert _trick(cfg, "bn_options") == {"momentum": 1 - BN_MOMENTUM, "eps": BN_EPS, "learn_scale": False}
    assert _trick(cfg, "patch_whitening") == {"num_images": WHITEN_IMAGES, "eps": WHITEN_EPS,
                                              "bias_epochs": WHITEN_BIAS_EPOCHS}
    ema = _trick(cfg, "ema")
    assert ema["decay"] == EMA_DECAY_BASE**EMA_EVERY and ema["every_steps"] == EMA_EVERY
    assert ema["ramp_power"] == EMA_POW and ema["reset_weights"] is True
    assert ema["start_epoch"] == EMA_START_EPOCHS and ema["reset_at_epoch_end"] is True
    assert _trick(cfg, "tta") == {"flip": True, "translate": TTA_TRANSLATE}
    sched = cfg.schedule
    assert (sched["name"], sched["anneal"], sched["pct_start"]) == ("one_cycle", "linear", SCHEDULE_PEAK_AT)
    assert 1 / sched["div_factor"] == pytest.approx(SCHEDULE_START, rel=1e-15)
    assert 1 / (sched["div_factor"] * sched["final_div_factor"]) == pytest.approx(SCHEDULE_END, rel=1e-15)


# ---- the record's training, written out ---------------------------------------------------------

def one_cycle(t: int, total: int) -> float:
    """The learning-rate multiplier of step ``t`` (from 0): linear from 0.2 up to 1 at step
    ``0.23 T - 1``, then down to 0.07 at step ``T - 1`` (torch's OneCycleLR convention)."""
    peak = SCHEDULE_PEAK_AT * total - 1
    if t <= peak:
        return SCHEDULE_START + (1 - SCHEDULE_START) * t / peak
    return 1 + (SCHEDULE_END - 1) * (t - peak) / (total - 1 - peak)


def test_the_written_out_schedule_is_torchs_one_cycle():
    total = 24
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=total, pct_start=SCHEDULE_PEAK_AT,
                                                anneal_strategy="linear", cycle_momentum=False,
                                                div_factor=1 / SCHEDULE_START,
                                                final_div_factor=SCHEDULE_START / SCHEDULE_END)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([one_cycle(t, total) for t in range(total)], rel=1e-12)


def record_whitening(images: torch.Tensor) -> torch.Tensor:
    """The record's whitening filters (first half): the eigenvectors of the uncentred 2x2 patch
    second moments, largest first, each divided by sqrt(eigenvalue + eps); in float64 here."""
    patches = images.double().unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 3 * 2 * 2)
    eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
    return (eigenvectors / torch.sqrt(eigenvalues + WHITEN_EPS)).T.flip(0)


def record_tta(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The record's final evaluation: mirror, and the two 1-pixel shifts each with its mirror."""
    def mirror(z):
        return 0.5 * net(z) + 0.5 * net(z.flip(-1))

    padded = F.pad(x, (TTA_TRANSLATE,) * 4, mode="reflect")
    h, w = x.shape[-2:]
    shifted = [padded[:, :, :h, :w], padded[:, :, 2:2 + h, 2:2 + w]]
    return 0.5 * mirror(x) + 0.5 * torch.stack([mirror(s) for s in shifted]).mean(0)


def record_training(init: dict[str, torch.Tensor], batches: list, num_train: int) -> nn.Module:
    """airbench94's loop on the given batches, from the given weights."""
    net = speedrun_cnn(3, 10, widths=WIDTHS)
    net.load_state_dict(init)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum, m.eps = 1 - BN_MOMENTUM, BN_EPS
            m.weight.requires_grad_(False)
    net.whiten.weight.requires_grad_(False)

    kilostep = 1024 * (1 + 1 / (1 - MOMENTUM))
    lr = HYP_LR / kilostep                 # per example of a summed loss
    shrink = HYP_WD * BATCH / kilostep     # decoupled weight decay, per step
    lr_bias = lr * BIAS_SCALER
    norm_biases = [m.bias for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    others = [p for p in net.parameters() if p.requires_grad and all(p is not q for q in norm_biases)]
    groups = [(norm_biases, lr_bias, shrink / lr_bias), (others, lr, shrink / lr)]
    momentum_buffers: dict[nn.Parameter, torch.Tensor] = {}

    floats = [k for k, v in net.state_dict().items() if v.is_floating_point()]
    average = None
    total = len(batches)
    per_epoch = num_train // BATCH
    step = 0
    for epoch in range(math.ceil(total / per_epoch)):
        net.whiten.bias.requires_grad_(epoch < SHRUNK_BIAS_EPOCHS)
        net.train()
        for x, y in batches[epoch * per_epoch:(epoch + 1) * per_epoch]:
            loss = F.cross_entropy(net(x), y, label_smoothing=LABEL_SMOOTHING, reduction="none").sum()
            net.zero_grad(set_to_none=True)
            loss.backward()
            scale = one_cycle(step, total)
            with torch.no_grad():
                for params, base_lr, coupled_decay in groups:
                    for p in params:
                        if p.grad is None:  # frozen (the whitening bias after its epochs)
                            continue
                        d = p.grad + coupled_decay * p
                        buf = momentum_buffers.get(p)
                        buf = d.clone() if buf is None else buf.mul_(MOMENTUM).add_(d)
                        momentum_buffers[p] = buf
                        p.sub_(base_lr * scale * (d + MOMENTUM * buf))  # Nesterov
            step += 1
            if epoch >= SHRUNK_EMA_START and step % EMA_EVERY == 0:
                state = net.state_dict()
                with torch.no_grad():
                    if average is None:
                        average = {k: state[k].clone() for k in floats}
                    else:
                        rho = EMA_DECAY_BASE**EMA_EVERY * (step / total) ** EMA_POW
                        for k in floats:
                            average[k].lerp_(state[k], 1 - rho)
                            state[k].copy_(average[k])
        if average is not None:  # the network restarts from the average after every epoch
            state = net.state_dict()
            with torch.no_grad():
                for k in floats:
                    state[k].copy_(average[k])
    return net


class _Record(Callback):
    """The initial weights (after the whitening is fitted) and every batch the model saw."""

    def __init__(self):
        self.init: dict[str, torch.Tensor] = {}
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_fit_start(self, state):
        self.init = {k: v.detach().clone() for k, v in state.raw_model.state_dict().items()}

    def on_after_forward(self, state):
        self.batches.append((state.inputs.detach().clone(), state.targets.detach().clone()))


def shrunk_speedrun_config(*overrides: str):
    cfg = load_config(ROOT / "configs" / "cifar10_speedrun.yaml", [
        f"data.batch_size={BATCH}", "data.eval_batch_size=64", f"model.widths={WIDTHS}".replace(" ", ""),
        f"train.epochs={EPOCHS}", f"train.steps={EPOCHS * NUM_TRAIN // BATCH}", "train.precision=fp32",
        "train.channels_last=false", "train.compile=false", "train.device=cpu", "train.seed=3",
        # the config's lr is per mean-loss step at batch 1,024: per example it is lr / 1024
        f"optimizer.lr={load_config(ROOT / 'configs' / 'cifar10_speedrun.yaml').optimizer['lr'] * BATCH / 1024!r}",
        *overrides])
    _trick(cfg, "ema")["start_epoch"] = SHRUNK_EMA_START
    _trick(cfg, "patch_whitening").update(bias_epochs=SHRUNK_BIAS_EPOCHS, num_images=SHRUNK_WHITEN_IMAGES)
    return cfg


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    data = synthetic(num_train=NUM_TRAIN, num_test=64, shape=(3, 32, 32), num_classes=10, seed=1)
    splits = Splits(data.train, None, data.test, name="synthetic")
    record = _Record()
    run = build_run(shrunk_speedrun_config(), splits=splits, callbacks=[record])
    run.trainer.fit()
    return run, record, splits


def test_whitening_is_the_records(trained):
    run, record, _ = trained
    images = training_images(run.trainer.train_data, SHRUNK_WHITEN_IMAGES, seed=run.config.train.seed)
    w = record.init["whiten.weight"].flatten(1).double()
    half, expected = w[:12], record_whitening(images)
    torch.testing.assert_close(w[12:], -half, rtol=0, atol=0)
    flipped = torch.where(((half - expected).norm(dim=1) < (half + expected).norm(dim=1))[:, None], half, -half)
    torch.testing.assert_close(flipped, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    assert torch.count_nonzero(record.init["whiten.bias"]) == 0


def test_trainer_steps_equal_the_records_loop(trained):
    run, record, splits = trained
    assert len(record.batches) == EPOCHS * NUM_TRAIN // BATCH == run.trainer.state.step
    reference = record_training(record.init, record.batches, NUM_TRAIN)
    ours = run.trainer.state.raw_model.state_dict()
    theirs = reference.state_dict()
    moved = 0.0
    for key, value in theirs.items():
        if not value.is_floating_point():
            continue
        scale = value.abs().max().item() + 1e-12
        torch.testing.assert_close(ours[key], value, rtol=2e-5, atol=2e-5 * scale, msg=lambda m, k=key: f"{k}: {m}")
        moved = max(moved, (value - record.init[key]).abs().max().item() / scale)
    assert moved > 1e-2  # the weights did move: the comparison is not of two copies of the start
    # the whitening bias trained in the first two epochs, then froze
    assert not torch.equal(theirs["whiten.bias"], record.init["whiten.bias"])
    assert not run.trainer.state.raw_model.whiten.bias.requires_grad


def test_final_evaluation_equals_the_records_tta(trained):
    run, record, splits = trained
    reference = record_training(record.init, record.batches, NUM_TRAIN).eval()
    with torch.no_grad():
        expected = record_tta(reference, splits.test.inputs)
    got = run.trainer.predict(run.test_data)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert not torch.allclose(got, reference(splits.test.inputs), atol=1e-3)  # TTA changed the logits
