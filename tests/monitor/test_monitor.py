"""The Monitor's statistics and diagnoses on constructed runs, and the LR range test."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from trickbag.data import ArrayDataset, DeviceLoader, synthetic
from trickbag.monitor import Monitor, lr_find, plot_lr_find
from trickbag.train import Trainer
from trickbag.train.callbacks import Callback


def fit(model, *, lr=1e-2, opt="adamw", epochs=4, data=None, every=5, run_dir=None, shuffle_labels=False, **kw):
    s = data or synthetic(num_train=512, num_test=256, shape=(16,), num_classes=4, seed=0)
    train = s.train
    if shuffle_labels:
        g = torch.Generator().manual_seed(0)
        train = ArrayDataset(train.inputs, train.targets[torch.randperm(len(train), generator=g)])
    mon = Monitor(every_steps=every)
    t = Trainer(model, DeviceLoader(train, 32), val_data=DeviceLoader(s.test, 128, shuffle=False),
                optimizer={"name": opt, "lr": lr}, callbacks=[mon], epochs=epochs, progress=False, run_dir=run_dir, **kw)
    t.fit()
    return mon, t


def codes(mon):
    return {d["code"] for d in mon.diagnoses}


def mlp(act=nn.ReLU, depth=2, width=64, seed=0):
    torch.manual_seed(seed)
    layers, w = [], 16
    for _ in range(depth):
        layers += [nn.Linear(w, width), act()]
        w = width
    return nn.Sequential(*layers, nn.Linear(w, 4))


def test_a_healthy_run_gets_no_diagnosis():
    mon, t = fit(mlp(), epochs=8)
    assert t.state.history[-1]["val_acc"] > 0.95
    assert codes(mon) == set()


def test_a_learning_rate_far_too_high_is_diverging():
    mon, _ = fit(mlp(), lr=50.0, opt="sgd", epochs=3)
    assert codes(mon) & {"diverging", "nan_loss"}, mon.diagnoses


def test_a_deep_sigmoid_network_has_vanishing_gradients():
    mon, _ = fit(mlp(nn.Sigmoid, depth=10, width=32), lr=0.05, opt="sgd", epochs=2)
    assert "vanishing_gradients" in codes(mon), mon.diagnoses
    d = next(d for d in mon.diagnoses if d["code"] == "vanishing_gradients")
    assert "0" in d["message"] and d["fix"]


def test_a_network_whose_relus_are_all_dead():
    model = mlp()
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # every pre-activation negative: the ReLU is dead for good
    mon, _ = fit(model, epochs=2)
    dead = [d for d in mon.diagnoses if d["code"] == "dead_relu"]
    assert dead and dead[0]["where"] == "1: ReLU" and "100%" in dead[0]["message"]
    assert "loss_flat" in codes(mon)


def test_shuffled_labels_leave_the_loss_flat_and_accuracy_at_chance():
    mon, _ = fit(mlp(width=16), lr=1e-3, epochs=3, shuffle_labels=True)
    assert {"loss_flat", "chance_accuracy"} <= codes(mon), mon.diagnoses


def test_overfitting_and_still_improving_from_the_history():
    from trickbag.monitor import diagnose

    history = [{"train_loss": t, "val_loss": v, "val_acc": a} for t, v, a in
               [(1.0, 0.9, 0.5), (0.6, 0.7, 0.6), (0.4, 0.75, 0.62), (0.2, 0.8, 0.63), (0.1, 0.95, 0.70)]]
    found = {d["code"] for d in diagnose([], history, {"activations": [], "weights": []})}
    assert found == {"overfitting", "still_improving"}


def test_statistics_match_a_direct_computation(tmp_path):
    s = synthetic(num_train=64, num_test=32, shape=(16,), num_classes=4)
    model = mlp(width=8)
    seen = {}

    class Capture(Callback):
        def on_batch_start(self, state):
            if state.step == 0:
                with torch.no_grad():
                    seen["pre"] = model[0](state.inputs)
                    seen["w"] = model[0].weight.detach().clone()

        def on_after_backward(self, state):
            if state.step == 0:
                seen["grad"] = model[0].weight.grad.detach().clone()

    mon = Monitor(every_steps=1000, flush_every=1)
    Trainer(model, DeviceLoader(s.train, 64, shuffle=False), optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
            callbacks=[Capture(), mon], steps=1, progress=False, run_dir=tmp_path).fit()
    rec = mon.samples[0]
    names = [n for n, _ in mon.layer_info["activations"]]
    relu = torch.relu(seen["pre"])
    i = names.index("1: ReLU")
    mean, std, zero, dead, _ = rec["act"][i]
    assert mean == pytest.approx(relu.mean().item(), rel=1e-5) and std == pytest.approx(relu.std().item(), rel=1e-5)
    assert zero == pytest.approx((relu == 0).float().mean().item())
    assert dead == pytest.approx((relu == 0).all(dim=0).float().mean().item())
    assert sum(rec["act_hist"][i]) == pytest.approx(relu.numel(), rel=1e-5)
    assert rec["act_range"][i] == pytest.approx(relu.abs().max().item() * 1.05, rel=1e-5)
    norm, gmean, gstd, rms, wnorm = rec["grad"][0]
    assert norm == pytest.approx(seen["grad"].norm().item(), rel=1e-5)
    assert rms == pytest.approx(seen["grad"].norm().item() / seen["grad"].numel() ** 0.5, rel=1e-5)
    ratio = (model[0].weight.detach() - seen["w"]).norm() / seen["w"].norm()
    assert rec["update_ratio"][0] == pytest.approx(ratio.item(), rel=1e-4)
    lines = [json.loads(x) for x in (tmp_path / "monitor.jsonl").read_text().splitlines()]
    assert lines[0]["kind"] == "layers" and lines[1]["kind"] == "sample"


def test_hooks_are_removed_and_memory_stays_bounded():
    model = mlp()
    mon = Monitor(every_steps=1, flush_every=2, max_samples=10)
    s = synthetic(num_train=512, num_test=64, shape=(16,), num_classes=4)
    Trainer(model, DeviceLoader(s.train, 16), callbacks=[mon], epochs=2, progress=False).fit()
    assert all(not m._forward_hooks for m in model.modules())
    assert len(mon.samples) <= 10
    steps = [r["step"] for r in mon.samples]
    assert steps == sorted(steps) and steps[-1] == 64  # the latest sample (after update 64) is kept


def test_tensorboard_receives_scalars_and_histograms(tmp_path):
    pytest.importorskip("torch.utils.tensorboard", reason="tensorboard is not installed (extra: tensorboard)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fit(mlp(), epochs=1, run_dir=tmp_path)
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"histograms": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "monitor/loss" in tags["scalars"] and any(t.startswith("update_ratio/") for t in tags["scalars"])
    assert any(t.startswith("activation/") for t in tags["histograms"])
    assert any(t.startswith("gradient/") for t in tags["histograms"])


def regression(seed=0):
    torch.manual_seed(seed)
    x = torch.randn(2048, 10)
    y = x @ torch.randn(10, 1) + 0.1 * torch.randn(2048, 1)
    return ArrayDataset(x, y)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lr_find_suggests_a_rate_inside_the_known_good_range(seed, tmp_path):
    """Least squares on whitened inputs: the Hessian is about 2I, so plain SGD converges for
    rates up to about 1 and diverges beyond 2/lambda_max; useful rates lie in [0.01, 1]."""
    model = nn.Linear(10, 1)
    t = Trainer(model, DeviceLoader(regression(seed), 64), loss=nn.functional.mse_loss,
                optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.0), epochs=1, progress=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_before = t._prepare().optimizer.state_dict()
    r = lr_find(t, min_lr=1e-5, max_lr=10, steps=100)
    assert 0.01 <= r.steepest <= 1.0 and 0.01 <= r.min_over_10 <= 1.0
    lo, hi = r.cyclic_bounds
    assert lo < hi <= 1.0 and r.stopped_early
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert t.state.optimizer.state_dict()["param_groups"][0]["lr"] == opt_before["param_groups"][0]["lr"] == 0.1
    assert plot_lr_find(r, tmp_path / "lr.png").stat().st_size > 10_000


def test_lr_find_bad_arguments():
    t = Trainer(nn.Linear(10, 1), DeviceLoader(regression(), 64), loss=nn.functional.mse_loss, epochs=1, progress=False)
    with pytest.raises(ValueError, match="max_lr must be above min_lr"):
        lr_find(t, min_lr=1.0, max_lr=0.1)
    with pytest.raises(ValueError, match="steps must be an integer >= 5"):
        lr_find(t, steps=2)


def test_default_sampling_gives_about_twenty_samples_in_any_run():
    s = synthetic(num_train=320, num_test=64, shape=(16,), num_classes=4)
    for steps in (12, 40, 2000):
        mon = Monitor(flush_every=1)
        Trainer(mlp(width=8), DeviceLoader(s.train, 32), callbacks=[mon], steps=steps, progress=False).fit()
        assert mon.every_steps == max(1, min(50, steps // 20))
        assert len(mon.samples) >= min(steps, 20), (steps, len(mon.samples))
    assert Monitor(every_steps=7).every_steps == 7


def test_layers_carry_their_module_names():
    from trickbag.monitor import layer_label

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
            self.head = nn.Linear(4, 2)

    named = dict(Net().named_modules())
    assert layer_label("encoder.0", named["encoder.0"]) == "encoder.0: Linear"
    assert layer_label("head", named["head"]) == "head"
    assert layer_label("layer1.0.conv1", nn.Conv2d(1, 1, 1)) == "layer1.0.conv1"


def test_histograms_follow_the_data_as_it_grows():
    """A layer whose outputs grow 100-fold during the run: each sample's range covers its values,
    so nothing piles up in the edge bins as it did with a range fixed at the first sample."""
    s = synthetic(num_train=256, num_test=64, shape=(16,), num_classes=4)
    model = mlp(width=8)

    class Grow(Callback):
        def on_step_end(self, state):
            if state.step == 4:
                with torch.no_grad():
                    model[0].weight.mul_(100.0)
                    model[0].bias.mul_(100.0)

    mon = Monitor(every_steps=1, flush_every=1)
    Trainer(model, DeviceLoader(s.train, 32), optimizer={"name": "sgd", "lr": 1e-6}, callbacks=[Grow(), mon],
            steps=8, progress=False).fit()
    first, last = mon.samples[0], mon.samples[-1]
    assert last["act_range"][0] > 50 * first["act_range"][0]
    for rec in (first, last):
        hist = rec["act_hist"][0]
        assert (hist[0] + hist[-1]) / sum(hist) < 0.05  # the edges hold the extremes, not a pile-up
