"""The trainer: equal to a hand-written loop, events in order, accumulation, precision, errors."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from trickbag.data import DeviceLoader, synthetic
from trickbag.train import Event, Trainer
from trickbag.train.callbacks import Callback

from .helpers import Recorder, data, loaders, mlp


def test_learns_and_reports_metrics():
    splits = data()
    train, val = loaders(splits)
    trainer = Trainer(mlp(), train, val_data=val, optimizer={"name": "adamw", "lr": 1e-2}, epochs=4,
                      progress=False, track_train_acc=True)
    history = trainer.fit()
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["val_acc"] > 0.9 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert 0.0 <= history[-1]["train_acc"] <= 1.0
    assert "val_top5" not in history[-1]  # 4 classes: top-5 would always be 1
    assert trainer.state.step == 4 * len(train)
    preds = trainer.predict(val)
    assert preds.shape == (128, 4)
    acc = (preds.argmax(1) == splits.test.targets).float().mean().item()
    assert acc == pytest.approx(trainer.evaluate(val)["val_acc"])


def test_equals_a_hand_written_loop_bit_for_bit():
    splits = data()
    model_a, model_b = mlp(bn=True), mlp(bn=True)
    loader_a = DeviceLoader(splits.train, 32, seed=3)
    loader_b = DeviceLoader(splits.train, 32, seed=3)
    trainer = Trainer(model_a, loader_a, optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
                      epochs=2, seed=5, progress=False, device="cpu")
    trainer.fit()
    torch.manual_seed(5)
    opt = torch.optim.SGD(model_b.parameters(), lr=0.1, momentum=0.9)
    model_b.train()
    for _ in range(2):
        for x, y in loader_b:
            loss = F.cross_entropy(model_b(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    for (k, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), k


def test_events_fire_in_loop_order_and_callbacks_in_list_order():
    splits = data(n=64)
    order = []

    class Tag(Callback):
        def __init__(self, tag):
            self.tag = tag

        def on_batch_start(self, state):
            order.append(self.tag)

    rec = Recorder.make()
    train, val = loaders(splits, batch=32)
    Trainer(mlp(), train, val_data=val, callbacks=[rec, Tag("a"), Tag("b")], epochs=2, progress=False).fit()
    names = [e for e, _, _ in rec.log]
    per_batch = ["batch_start", "after_forward", "after_loss", "before_backward", "after_backward", "step_end"]
    epoch = ["epoch_start", *per_batch * 2, "eval_start", "eval_end", "epoch_end"]
    assert names == ["fit_start", *epoch * 2, "fit_end"]
    assert order == ["a", "b"] * 4
    documented = Event.__doc__
    assert all(e.name in documented for e in Event)


def test_gradient_accumulation_equals_one_large_batch():
    splits = data(n=128)
    big, small = mlp(), mlp()
    opt = lambda m: torch.optim.SGD(m.parameters(), lr=0.1)  # noqa: E731
    Trainer(big, DeviceLoader(splits.train, 64, seed=1), optimizer=opt, epochs=1, progress=False).fit()
    t = Trainer(small, DeviceLoader(splits.train, 32, seed=1), optimizer=opt, epochs=1, grad_accum_steps=2,
                progress=False)
    rec = Recorder.make([Event.BATCH_START, Event.STEP_END])
    t.callbacks.append(rec)
    t.fit()
    assert t.state.step == 2
    assert [e for e, _, _ in rec.log].count("batch_start") == 4
    for a, b in zip(big.parameters(), small.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_steps_cap_and_stop_flag():
    splits = data()
    train, _ = loaders(splits)
    t = Trainer(mlp(), train, steps=5, progress=False)
    t.fit()
    assert t.state.step == 5 and len(t.state.history) == 1

    class StopAt3(Callback):
        def on_step_end(self, state):
            if state.step == 3:
                state.stop("enough")

    t = Trainer(mlp(), train, epochs=5, callbacks=[StopAt3()], progress=False)
    t.fit()
    assert t.state.step == 3 and t.state.stop_reason == "enough"


def test_bf16_autocast_on_cpu():
    splits = data()
    train, val = loaders(splits)
    t = Trainer(mlp(), train, val_data=val, optimizer={"name": "adamw", "lr": 1e-2}, epochs=2, precision="bf16",
                progress=False)
    assert t.fit()[-1]["val_acc"] > 0.8


def test_custom_metrics_and_progress_lines(capsys):
    splits = data()
    train, val = loaders(splits)
    t = Trainer(mlp(), train, val_data=val, epochs=1,
                metrics={"error": lambda out, y: (out.argmax(1) != y).float().mean()})
    h = t.fit()
    assert h[0]["val_error"] == pytest.approx(1 - h[0]["val_acc"])
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "val_acc" in err and "samples/s" in err and "ETA" in err


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "give epochs or steps"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"epochs": 1, "precision": "fp8"}, "unknown precision 'fp8'"),
        ({"epochs": 1, "grad_accum_steps": 0}, "grad_accum_steps must be an integer >= 1"),
        ({"epochs": 1, "callbacks": [object()]}, "Callback instances"),
        ({"epochs": 1, "device": "cuda:7"} if not torch.cuda.is_available() else {"epochs": 1, "precision": "x"}, "CUDA is not available|unknown precision"),
    ],
)
def test_bad_arguments(kwargs, match):
    splits = data(n=64)
    with pytest.raises(ValueError, match=match):
        Trainer(mlp(), DeviceLoader(splits.train, 32), progress=False, **kwargs)


def test_deterministic_switch_holds_for_the_fit_and_restores_the_settings():
    from trickbag.train import callbacks as C

    seen = {}

    class Spy(C.Callback):
        def on_step_end(self, state):
            seen["algorithms"] = torch.are_deterministic_algorithms_enabled()
            seen["benchmark"] = torch.backends.cudnn.benchmark
            seen["cublas"] = os.environ.get("CUBLAS_WORKSPACE_CONFIG")

    before = torch.are_deterministic_algorithms_enabled()
    splits = synthetic(num_train=64, num_test=16, shape=(4,), num_classes=2)
    Trainer(torch.nn.Linear(4, 2), DeviceLoader(splits.train, 32), callbacks=[Spy()], steps=1, progress=False,
            deterministic=True).fit()
    assert seen == {"algorithms": True, "benchmark": False, "cublas": seen["cublas"]} and seen["cublas"]
    assert torch.are_deterministic_algorithms_enabled() == before  # restored
    from trickbag.train.config import load_config

    assert load_config({"train": {"deterministic": True}}).train.deterministic is True
    with pytest.raises(ValueError, match="train.deterministic must be true or false"):
        load_config({"train": {"deterministic": "yes"}})
