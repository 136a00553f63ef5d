"""Every loop callback shows its effect; conflicting tricks are refused before the first step."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trickbag.data import DeviceLoader, synthetic
from trickbag.losses import FocalLoss, LabelSmoothingCrossEntropy, flood
from trickbag.schedules import cyclic_cosine, linear_decay, one_cycle
from trickbag.train import Trainer
from trickbag.train import callbacks as C

from .helpers import data, loaders, mlp


def run(callbacks, *, epochs=1, model=None, loss=None, lr=0.05, schedule=None, val=True, run_dir=None, n=256, **kw):
    splits = data(n=n)
    train, val_loader = loaders(splits)
    t = Trainer(model or mlp(), train, val_data=val_loader if val else None, loss=loss,
                optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=lr), schedule=schedule,
                callbacks=callbacks, epochs=epochs, progress=False, run_dir=run_dir, **kw)
    t.fit()
    return t


class Spy(C.Callback):
    """Records lr, loss and batch statistics at chosen events."""

    def __init__(self):
        self.lrs, self.losses, self.inputs, self.mix = [], [], [], []

    def on_batch_start(self, state):
        self.inputs.append(state.inputs.clone())
        self.mix.append(state.mix)

    def on_before_backward(self, state):
        self.losses.append(state.loss.detach().clone())

    def on_step_end(self, state):
        self.lrs.append(state.lr)


def test_schedule_sets_the_learning_rate_it_should():
    spy = Spy()
    t = run([spy], epochs=2, schedule=one_cycle(16), lr=0.4)
    assert t.state.step == 16
    # the lr seen at STEP_END of step s (1-based) is the one for the next update: base * schedule(s)
    expected = [0.4 * one_cycle(16)(min(s, 15)) for s in range(1, 17)]
    assert spy.lrs == pytest.approx(expected)


def test_gradient_clipping_caps_the_update():
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    run([C.GradientClipping(max_norm=1e-3)], steps=1, model=model, lr=1.0, val=False)
    step = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert step.item() == pytest.approx(1e-3, rel=1e-4)  # lr 1 times the clipped norm


def test_gradient_centralization_centres_the_weight_update():
    model = mlp()
    w0 = model[0].weight.detach().clone()
    run([C.GradientCentralization()], steps=1, model=model, lr=1.0, val=False)
    delta = model[0].weight.detach() - w0
    assert delta.abs().sum() > 0
    torch.testing.assert_close(delta.mean(dim=1), torch.zeros(32), atol=1e-6, rtol=0)


def test_flooding_floods_the_data_loss():
    class Raw(C.Callback):
        def __init__(self):
            self.raw = []

        def on_after_forward(self, state):
            pass

        def on_after_loss(self, state):
            self.raw.append(state.loss.detach().clone())

    raw, spy = Raw(), Spy()
    run([raw, C.Flooding(b=5.0), spy], steps=3, val=False)
    for r, f in zip(raw.raw, spy.losses):
        torch.testing.assert_close(f, flood(r, 5.0))
    assert all(f > 5.0 for f in spy.losses)  # far below b: ascent, value 2b - loss


def test_label_smoothing_swaps_the_criterion_and_refuses_other_losses():
    seen = []

    class Crit(C.Callback):
        def on_after_forward(self, state):
            seen.append(state.criterion)

    t = run([C.LabelSmoothing(0.2), Crit()], steps=1, val=False)
    assert isinstance(seen[0], LabelSmoothingCrossEntropy) and seen[0].smoothing == 0.2
    assert t.state.criterion is F.cross_entropy  # restored at the end
    with pytest.raises(ValueError, match="LabelSmoothing replaces a cross-entropy loss, but the loss is FocalLoss"):
        run([C.LabelSmoothing(0.1)], steps=1, loss=FocalLoss(), val=False)
    with pytest.raises(ValueError, match=r"CrossEntropyLoss with label_smoothing=0.2 \(it smooths already\)"):
        run([C.LabelSmoothing(0.1)], steps=1, loss=nn.CrossEntropyLoss(label_smoothing=0.2), val=False)


@pytest.mark.parametrize("weight", [None, torch.tensor([1.0, 2.0, 0.5, 3.0])])
def test_label_smoothing_keeps_the_losss_weight_reduction_and_ignore_index(weight):
    """Padding targets stay ignored, a summed loss stays summed and class weights stay on."""
    seen = []

    class Check(C.Callback):
        def on_after_loss(self, state):
            expected = F.cross_entropy(state.outputs, state.targets, weight=weight, ignore_index=0,
                                       reduction="sum", label_smoothing=0.2)
            seen.append((state.loss.detach().clone(), expected.detach()))

    run([C.LabelSmoothing(0.2), Check()], steps=2, loss=nn.CrossEntropyLoss(weight=weight, ignore_index=0,
                                                                             reduction="sum"), val=False)
    assert len(seen) == 2
    for got, expected in seen:
        torch.testing.assert_close(got, expected)


def test_mixup_mixes_the_loss_with_odd_batches():
    splits = synthetic(num_train=99, num_test=10, shape=(16,), num_classes=4)
    spy = Spy()
    model = mlp()

    class Check(C.Callback):
        def on_after_loss(self, state):
            m = state.mix
            out = state.outputs
            expected = m.lam * F.cross_entropy(out, m.targets_a) + (1 - m.lam) * F.cross_entropy(out, m.targets_b)
            torch.testing.assert_close(state.loss, expected)
            self.ok = True

    check = Check()
    t = Trainer(model, DeviceLoader(splits.train, 33, drop_last=False), callbacks=[C.Mixup(alpha=0.4), spy, check],
                epochs=1, progress=False)
    t.fit()
    assert check.ok and all(m is not None for m in spy.mix) and t.state.step == 3


def test_mixup_with_multilabel_targets_and_bce():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=gen)
    y = (torch.rand(64, 3, generator=gen) > 0.5).float()
    from trickbag.data import ArrayDataset

    t = Trainer(nn.Linear(8, 3), DeviceLoader(ArrayDataset(x, y), 16), loss=nn.BCEWithLogitsLoss(),
                callbacks=[C.Mixup(alpha=1.0)], epochs=1, progress=False)
    t.fit()
    assert t.state.step == 4


def test_cutmix_and_augment_rewrite_inputs():
    splits = synthetic(num_train=64, num_test=16, shape=(1, 8, 8), num_classes=2)
    spy_before, spy_after = Spy(), Spy()
    from trickbag.augment import HFlip

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    Trainer(model, DeviceLoader(splits.train, 16), callbacks=[spy_before, C.Augment(HFlip(p=1.0)), spy_after],
            steps=1, progress=False).fit()
    torch.testing.assert_close(spy_after.inputs[0], spy_before.inputs[0].flip(3))
    spy = Spy()
    Trainer(model, DeviceLoader(splits.train, 16), callbacks=[C.CutMix(alpha=1.0), spy], steps=2, progress=False).fit()
    assert spy.mix[0] is not None and 0.0 <= float(spy.mix[0].lam) <= 1.0


@pytest.mark.parametrize(
    "callbacks, match",
    [
        (lambda: [C.Mixup(), C.CutMix()], "Mixup and CutMix both rewrite the same batch"),
        (lambda: [C.LRSchedule(linear_decay(10)), C.SnapshotEnsemble(2)], "LRSchedule and SnapshotEnsemble both set the learning rate"),
        (lambda: [C.Mixup(), C.AdversarialTraining()], "AdversarialTraining needs the batch's hard labels but runs after Mixup"),
    ],
)
def test_fighting_tricks_are_refused_before_the_first_step(callbacks, match):
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=match):
        run(callbacks(), steps=1, model=model)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_soft_targets_need_a_loss_that_takes_them():
    with pytest.raises(ValueError, match=r"Mixup\(soft_targets=True\).*FocalLoss needs hard class labels"):
        run([C.Mixup(soft_targets=True, num_classes=4)], steps=1, loss=FocalLoss())
    run([C.Mixup(soft_targets=True, num_classes=4)], steps=2, loss=LabelSmoothingCrossEntropy(0.1))


def test_two_weight_averages_warn():
    with pytest.warns(UserWarning, match="EMA and SWA both average weights"):
        run([C.EMA(0.9), C.SWA(start_epoch=0)], steps=1)


def test_weight_penalty_l2_equals_sgd_weight_decay():
    a, b = mlp(), mlp()
    run([C.WeightPenalty(l2=0.1)], steps=3, model=a, val=False)
    splits = data()
    train, _ = loaders(splits)
    decayed = [p for p in b.parameters() if p.dim() >= 2]
    rest = [p for p in b.parameters() if p.dim() < 2]
    Trainer(b, train, optimizer=lambda m: torch.optim.SGD([{"params": decayed, "weight_decay": 0.1}, {"params": rest}], lr=0.05),
            steps=3, progress=False).fit()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_early_stopping_stops_and_restores_the_best_weights():
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.64, 0.9])
    snapshots = {}

    class Score(C.Callback):
        def on_eval_end(self, state):
            state.metrics["score"] = next(scores)

        def on_epoch_end(self, state):
            snapshots[state.epoch + 1] = {k: v.clone() for k, v in state.raw_model.state_dict().items()}

    model = mlp()
    t = run([Score(), C.EarlyStopping(monitor="score", mode="max", patience=3)], epochs=6, model=model)
    assert len(t.state.history) == 5 and "has not improved for 3 epochs" in t.state.stop_reason
    assert t.state.stop_reason.startswith("early stopping after epoch 5:") and "keeps epoch 2's weights" in t.state.stop_reason
    assert t.state.metrics["best_epoch"] == 2
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[2][k])
    with pytest.raises(ValueError, match="monitors 'val_f1'.*available:.*val_acc"):
        run([C.EarlyStopping(monitor="val_f1")], epochs=1)


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_follows_its_formula_and_is_used_for_evaluation(warmup):
    """Each update is w_avg <- d w_avg + (1 - d) w; with the warm-up (the default) the n-th update's
    d is min(decay, (1 + n) / (10 + n)), TensorFlow's num_updates rule."""
    model = mlp()
    shadow0 = [t.detach().clone() for t in model.state_dict().values()]
    ema = C.EMA(decay=0.9, apply_at_end=False, warmup=warmup)
    seen = []

    class AtStep(C.Callback):
        def on_step_end(self, state):
            seen.append([t.detach().clone() for t in state.raw_model.state_dict().values()])

    t = run([AtStep(), ema], steps=2, model=model, val=False)
    expected = shadow0
    for n, weights in enumerate(seen):
        d = min(0.9, (1 + n) / (10 + n)) if warmup else 0.9
        expected = [d * e + (1 - d) * w for e, w in zip(expected, weights)]
    assert ema.updates == 2 and ema.decay_at(0, 2, updates=100) == 0.9
    assert ema.decay_at(0, 2, updates=0) == (0.1 if warmup else 0.9)
    for s, e in zip(ema.shadow, expected):
        torch.testing.assert_close(s, e)
    assert not all(torch.equal(s, w) for s, w in zip(ema.shadow, seen[-1]))
    # evaluation runs with the averaged weights and puts the raw ones back
    splits = data()
    _, val = loaders(splits)
    raw = [p.detach().clone() for p in model.parameters()]
    ema.on_eval_start(t.state)
    averaged_metrics = t.evaluate(val)
    ema.on_eval_end(t.state)
    assert all(torch.equal(p, r) for p, r in zip(model.parameters(), raw))
    with torch.no_grad():
        for p, s in zip(model.parameters(), ema.shadow):
            p.copy_(s)
    assert t.evaluate(val) == averaged_metrics


def test_swa_averages_epoch_end_weights():
    model = mlp()
    ends = []

    class Ends(C.Callback):
        def on_epoch_end(self, state):
            ends.append([p.detach().clone() for p in state.raw_model.parameters()])

    t = run([Ends(), C.SWA(start_epoch=1)], epochs=3, model=model)
    expected = [(a + b) / 2 for a, b in zip(ends[1], ends[2])]  # epochs 2 and 3
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p, e)
    assert "swa_val_acc" in t.state.metrics


def test_swa_recomputes_batchnorm_statistics_after_the_last_epoch():
    """Regression: training ends with the loader at the end of its epoch; update_bn then saw no
    batch and left BatchNorm at mean 0 and variance 1 (the SWA model scored near chance)."""
    model = mlp(bn=True)
    t = run([C.SWA(start_epoch=1)], epochs=3, model=model)
    bn = model[1]
    assert bn.running_mean.abs().sum() > 0 and not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert t.state.metrics["swa_val_acc"] > 0.6
    assert t.train_data.position == len(t.train_data)  # the loader's own position is left as it was


def test_snapshot_ensemble_saves_one_snapshot_per_cycle(tmp_path):
    spy = Spy()
    t = run([C.SnapshotEnsemble(cycles=3), spy], epochs=3, lr=0.2, run_dir=tmp_path)
    total = t.state.total_steps
    assert total == 24
    snapshots = sorted((tmp_path / "snapshots").glob("snapshot-*.pt"))
    assert len(snapshots) == 3
    cycle = 8
    expected = [0.2 * cyclic_cosine(cycle)(s) for s in range(1, total + 1)]
    assert spy.lrs == pytest.approx(expected)
    assert spy.lrs[cycle - 2] == pytest.approx(0.0, abs=1e-12)  # the lowest lr is the cycle's last update
    m = t.state.metrics
    assert len(m["snapshot_val_acc"]) == 3 and 0.0 <= m["ensemble_val_acc"] <= 1.0


def test_nan_guard_stops_with_a_diagnosis_and_keeps_the_last_good_weights(tmp_path):
    class PoisonAt3(C.Callback):
        def on_batch_start(self, state):
            if state.step == 2:
                state.inputs = state.inputs.clone()
                state.inputs[0, 0] = float("inf")

    model = mlp()
    weights = []

    class Keep(C.Callback):
        def on_step_end(self, state):
            weights.append([p.detach().clone() for p in state.raw_model.parameters()])

    t = run([PoisonAt3(), C.NaNGuard(), Keep(), C.Checkpoint(every_steps=1)], epochs=1, model=model, run_dir=tmp_path)
    d = t.state.metrics["diagnosis"]
    assert "non-finite loss at step 3" in d and "learning rate 0.05" in d and "first non-finite values in 0" in d
    assert t.state.step == 2 and t.state.diverged
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights[-1]))
    saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert saved["counters"]["step"] == 2


def test_nan_guard_lets_a_healthy_run_with_huge_finite_gradients_train():
    """Gradients of about 1e21 are finite; their squares are not. The guard must not stop."""
    t = run([C.NaNGuard()], steps=3, lr=1e-30, val=False, loss=lambda out, y: F.cross_entropy(out, y) * 1e22)
    assert t.state.step == 3 and not t.state.diverged and not t.state.stop_training


def test_metrics_logger_writes_jsonl(tmp_path):
    run([C.MetricsLogger(every_steps=4)], epochs=2, run_dir=tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in lines if r["kind"] == "step"]
    epochs = [r for r in lines if r["kind"] == "epoch"]
    assert [r["step"] for r in steps] == [4, 8, 12, 16]
    assert len(epochs) == 2 and "val_acc" in epochs[0] and "train_loss" in epochs[0]


def test_adversarial_training_replaces_part_of_the_batch():
    spy_before, spy_after = Spy(), Spy()
    run([spy_before, C.AdversarialTraining("fgsm", eps=0.25, ratio=0.5), spy_after], steps=1, val=False)
    a, b = spy_before.inputs[0], spy_after.inputs[0]
    k = a.shape[0] // 2
    delta = (b[:k] - a[:k]).abs()
    assert torch.allclose(delta[delta > 0], torch.full_like(delta[delta > 0], 0.25))
    assert torch.equal(b[k:], a[k:])


def test_embedding_adversarial_adds_gradients_and_restores_the_embedding():
    from trickbag.models import text_cnn

    splits = synthetic(num_train=64, num_test=16, shape=(12,), num_classes=2, vocab_size=50)

    def fit(adversarial):
        torch.manual_seed(0)
        model = text_cnn(50, 2, embed_dim=8, num_filters=4, dropout=0.0)
        seen = {"before": [], "after": [], "grad": []}

        class Before(C.Callback):  # runs before the adversarial callback's AFTER_BACKWARD
            def on_after_backward(self, state):
                seen["before"].append(state.raw_model.embedding.weight.detach().clone())

        class After(C.Callback):  # ... and this one after it
            def on_after_backward(self, state):
                seen["after"].append(state.raw_model.embedding.weight.detach().clone())
                seen["grad"].append(state.raw_model.fc.weight.grad.detach().clone())

        Trainer(model, DeviceLoader(splits.train, 16), optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
                callbacks=[Before(), *adversarial, After()], steps=2, progress=False).fit()
        return model, seen

    plain, plain_seen = fit([])
    for method in ("fgm", "pgd"):
        adv, seen = fit([C.EmbeddingAdversarial(method=method, epsilon=0.5)])
        assert len(seen["after"]) == 2
        for before, after in zip(seen["before"], seen["after"]):
            assert torch.equal(before, after)  # restored bit for bit before the update
        # the first step starts from the same weights: its gradient differs only by the added
        # adversarial gradient
        assert not torch.allclose(seen["grad"][0], plain_seen["grad"][0])
        assert not torch.equal(plain.fc.weight, adv.fc.weight)


class Payload:
    pass


def test_checkpoint_write_is_atomic_and_loads_only_weights(tmp_path):
    from trickbag.train import load_checkpoint, save_atomic

    path = tmp_path / "last.pt"
    save_atomic({"step": 1, "w": torch.ones(2)}, path)
    with pytest.raises(Exception):
        save_atomic({"step": 2, "bad": lambda: None}, path)  # fails half way through pickling
    assert load_checkpoint(path)["step"] == 1  # the good file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind

    torch.save({"obj": Payload()}, tmp_path / "evil.pt")  # any class: weights_only refuses it
    with pytest.raises(ValueError, match="refusing to load .*evil.pt.*a pickle can run code"):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_best_k_checkpoints(tmp_path):
    scores = iter([0.2, 0.5, 0.4, 0.6])

    class Score(C.Callback):
        def on_eval_end(self, state):
            state.metrics["score"] = next(scores)

    run([Score(), C.Checkpoint(every_epochs=None, keep_best=2, monitor="score")], epochs=4, run_dir=tmp_path)
    files = sorted(p.name for p in (tmp_path / "checkpoints").glob("best-*.pt"))
    assert files == ["best-2.pt", "best-4.pt"]
    best = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert [b["epoch"] for b in best] == [4, 2]


@pytest.mark.parametrize(
    "monitor, mode, values, kept",
    [
        ("val_loss", None, [2.31, 2.23, 2.18], [3]),  # a loss: lower is better, inferred
        ("val_loss", "max", [2.31, 2.23, 2.18], [1]),  # the config can say otherwise
        ("val_acc", None, [0.61, 0.72, 0.70], [2]),
        ("val_error", None, [0.3, 0.2, 0.25], [2]),
    ],
)
def test_best_checkpoints_follow_the_metrics_direction(tmp_path, monitor, mode, values, kept):
    scores = iter(values)

    class Score(C.Callback):
        def on_eval_end(self, state):
            state.metrics[monitor] = next(scores)

    run([Score(), C.Checkpoint(every_epochs=None, keep_best=1, monitor=monitor, mode=mode)], epochs=3,
        run_dir=tmp_path)
    best = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert [b["epoch"] for b in best] == kept
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("best-*.pt")) == [f"best-{kept[0]}.pt"]


def test_config_keep_best_on_a_loss_keeps_the_lowest(tmp_path):
    from trickbag.train.build import build_run
    from trickbag.train.config import load_config

    cfg = load_config({
        "data": {"name": "synthetic", "batch_size": 32,
                 "options": {"num_train": 128, "num_test": 64, "shape": [16], "num_classes": 4, "noise": 3.0}},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "sgd", "lr": 0.5},
        "train": {"epochs": 3, "keep_best": 1, "monitor": "val_loss", "checkpoint_every_epochs": None,
                  "progress": False, "device": "cpu"},
    })
    run_ = build_run(cfg, run_dir=tmp_path)
    history = run_.trainer.fit()
    losses = [h["val_loss"] for h in history]
    best = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert best[0]["epoch"] == 1 + losses.index(min(losses))
    assert [c.mode for c in run_.trainer.callbacks if isinstance(c, C.Checkpoint)] == ["min"]


def test_early_stopping_infers_its_direction():
    assert C.EarlyStopping(monitor="val_acc").mode == "max"
    assert C.EarlyStopping(monitor="val_loss").mode == "min"
    assert C.EarlyStopping(monitor="val_acc", mode="min").mode == "min"
    with pytest.raises(ValueError, match="unknown mode 'maximum'"):
        C.EarlyStopping(monitor="val_acc", mode="maximum")


def test_resume_restores_everything(tmp_path):
    """Save mid-run, resume in a fresh trainer: the same final weights as an uninterrupted run."""
    def make(seed_model, cbs):
        splits = data()
        train, val = loaders(splits)
        return Trainer(mlp(seed=seed_model, bn=True), train, val_data=val,
                       optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
                       schedule=one_cycle(24), callbacks=cbs, epochs=3, progress=False, run_dir=tmp_path)

    full = make(0, [C.EMA(0.9), C.Mixup(0.4)])
    full.fit()
    part = make(0, [C.EMA(0.9), C.Mixup(0.4), C.Checkpoint(every_steps=10, every_epochs=None)])

    class Halt(C.Callback):
        def on_step_end(self, state):
            if state.step == 10:
                state.stop("simulated crash")

    part.callbacks.append(Halt())
    part.fit()
    resumed = make(123, [C.EMA(0.9), C.Mixup(0.4), C.Checkpoint(every_steps=10, every_epochs=None), Halt()])
    resumed.callbacks[-1] = C.Callback()  # a no-op in the same slot
    resumed.callbacks[-1].__class__ = type("Halt", (C.Callback,), {})
    resumed.load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    resumed.fit()
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert [h["val_acc"] for h in full.state.history] == [h["val_acc"] for h in resumed.state.history]
    with pytest.raises(ValueError, match="was written with callbacks"):
        make(0, []).load_checkpoint(tmp_path / "checkpoints" / "last.pt")


def test_warning_free_plain_run():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run([], steps=2)


def _speedrun_fit(callbacks, *, epochs=3, steps=None, run_dir=None, resume=None):
    from trickbag.models import speedrun_cnn

    splits = data(n=160, shape=(3, 8, 8))
    train, val_loader = loaders(splits)
    torch.manual_seed(0)
    model = speedrun_cnn(3, 4, widths=(8, 8))
    t = Trainer(model, train, val_data=val_loader, optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.05),
                callbacks=callbacks, epochs=epochs, steps=steps, progress=False, run_dir=run_dir)
    if resume is not None:
        t.load_checkpoint(resume)
    t.fit()
    return t, splits


def test_patch_whitening_callback_initialises_freezes_and_survives_a_resume(tmp_path):
    from trickbag.init import patch_whitening_weights

    t, splits = _speedrun_fit([C.PatchWhitening(num_images=100, bias_epochs=2)], epochs=3)
    whiten = t.state.raw_model.whiten
    pick = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(t.seed))[:100].sort().values
    torch.testing.assert_close(whiten.weight, patch_whitening_weights(splits.train.inputs[pick], 2))  # never trained
    assert not whiten.weight.requires_grad and not whiten.bias.requires_grad  # the bias froze after 2 epochs
    # a resumed run keeps the checkpoint's (trained) bias instead of re-initialising
    stop = C.Checkpoint(every_steps=None, every_epochs=1)
    first, _ = _speedrun_fit([C.PatchWhitening(num_images=100, bias_epochs=5), stop], epochs=1, run_dir=tmp_path)
    bias = first.state.raw_model.whiten.bias.detach().clone()
    assert bias.abs().sum() > 0  # trained during the first epoch
    resumed, _ = _speedrun_fit([C.PatchWhitening(num_images=100, bias_epochs=5), C.Checkpoint(every_epochs=1)],
                               epochs=1, resume=tmp_path / "checkpoints" / "last.pt")
    torch.testing.assert_close(resumed.state.raw_model.whiten.bias, bias)
    with pytest.raises(ValueError, match="no Conv2d named 'stem'"):
        _speedrun_fit([C.PatchWhitening(layer="stem")], epochs=1)


def test_patch_whitening_samples_every_class_of_data_stored_class_by_class():
    """Image folders (the CIFAR-10 pack) are stored class by class: the whitening sample must be a
    seeded random draw, not the first N images (fails before: the first 50 were all class 0)."""
    from trickbag.data import ArrayDataset, DeviceLoader
    from trickbag.train.callbacks.initialization import training_images

    labels = torch.arange(10).repeat_interleave(50)  # sorted by class, like the pack
    images = labels.float()[:, None, None, None].expand(-1, 3, 4, 4).contiguous()
    loader = DeviceLoader(ArrayDataset(images, labels), 10, seed=0)
    for seed in (0, 1, 2):
        got = training_images(loader, 50, seed=seed)[:, 0, 0, 0].long()
        assert got.bincount(minlength=10).min() >= 1, f"seed {seed}: classes {got.bincount(minlength=10).tolist()}"
        assert got.unique().numel() == 10
    a, b = training_images(loader, 50, seed=0), training_images(loader, 50, seed=1)
    assert torch.equal(a, training_images(loader, 50, seed=0)) and not torch.equal(a, b)
    assert len(training_images(loader, 10_000, seed=0)) == 500  # more than there are: all of them


def test_ema_ramp_and_reset_follow_the_lookahead_formula():
    """EMA(every_steps=k, ramp_power=p, reset_weights=True) is Lookahead with slow step 1 - d_t."""
    ema = C.EMA(decay=0.8, every_steps=2, ramp_power=3, reset_weights=True, apply_at_end=False)
    assert ema.decay_at(0, 10) == 0.0 and ema.decay_at(10, 10) == pytest.approx(0.8)
    assert ema.decay_at(5, 10) == pytest.approx(0.8 * 0.125)
    splits = data(n=96)
    model = mlp()
    w0 = [p.detach().clone() for p in model.parameters()]
    trace = []

    class Before(C.Callback):  # records the fast weights each step, before EMA acts
        def on_step_end(self, state):
            trace.append([p.detach().clone() for p in state.raw_model.parameters()])

    t = Trainer(model, DeviceLoader(splits.train, 32, seed=0), optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
                callbacks=[Before(), ema], steps=6, progress=False)
    t.fit()
    slow = w0
    for step in range(1, 7):
        if step % 2 == 0:
            d = 0.8 * (step / 6) ** 3
            slow = [d * s + (1 - d) * f for s, f in zip(slow, trace[step - 1])]
    for p, s in zip(model.parameters(), slow):  # after step 6 the model was reset to the average
        torch.testing.assert_close(p.detach(), s, rtol=1e-5, atol=1e-6)


def test_ema_late_start_and_epoch_end_reset_follow_airbench():
    """start_epoch: the average starts as a copy at that epoch's first update; reset_at_epoch_end:
    the weights return to the average after every epoch, dropping the steps since the last update
    (airbench94's cadence; the old EMA averaged from the start and kept those steps)."""
    splits = data(n=96)
    model = mlp()
    fast = []

    class Before(C.Callback):  # the weights after each update, before EMA acts
        def on_step_end(self, state):
            fast.append([p.detach().clone() for p in state.raw_model.parameters()])

    seen = []

    class Evaluated(C.Callback):  # the weights evaluation sees (after EMA's swap)
        def on_eval_start(self, state):
            seen.append([p.detach().clone() for p in state.raw_model.parameters()])

    ema = C.EMA(decay=0.8, every_steps=2, ramp_power=3, reset_weights=True, start_epoch=1, reset_at_epoch_end=True)
    t = Trainer(model, DeviceLoader(splits.train, 32, seed=0), val_data=DeviceLoader(splits.test, 64, shuffle=False),
                optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1), callbacks=[Before(), ema, Evaluated()],
                epochs=3, progress=False)
    t.fit()
    assert len(fast) == 9  # 3 epochs of 3 steps: epoch 1 is steps 4-6, epoch 2 steps 7-9
    for a, b in zip(seen[0], fast[2]):  # epoch 0: nothing averaged, evaluation sees the weights as they are
        assert torch.equal(a, b)
    avg = fast[3]  # step 4, the first update of epoch 1: a copy
    for step in (6, 8):
        d = 0.8 * (step / 9) ** 3
        avg = [d * s + (1 - d) * f for s, f in zip(avg, fast[step - 1])]
        if step == 6:
            for a, b in zip(seen[1], avg):  # epoch 1 evaluated the average
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for p, s in zip(model.parameters(), avg):  # step 9 was dropped by the reset at the end of epoch 2
        torch.testing.assert_close(p.detach(), s, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(fast[8][0], avg[0])
    with pytest.raises(ValueError, match="start_epoch must be an integer >= 0, got -1"):
        C.EMA(start_epoch=-1)


def test_bn_options_and_group_scales_reach_the_optimizer():
    from trickbag.layers import apply_batchnorm_options
    from trickbag.optim import create_optimizer

    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    apply_batchnorm_options(net, momentum=0.4, eps=1e-5, learn_scale=False)
    opt = create_optimizer(net, "sgd", lr=0.1, weight_decay=0.01, decay_norm_and_bias=True,
                           group_scales={"norm_bias": {"lr": 64.0, "weight_decay": 1 / 64}})
    by_param = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert id(net[1].weight) not in by_param  # a frozen scale is not optimised
    bias_group = by_param[id(net[1].bias)]
    assert bias_group["lr"] == pytest.approx(6.4) and bias_group["weight_decay"] == pytest.approx(0.01 / 64)
    assert by_param[id(net[0].weight)]["lr"] == 0.1 and by_param[id(net[3].bias)]["weight_decay"] == 0.01
    with pytest.raises(ValueError, match="unknown parameter category in group_scales 'bn_bias'"):
        create_optimizer(net, "sgd", lr=0.1, group_scales={"bn_bias": {"lr": 2.0}})
    with pytest.raises(ValueError, match="keys 'lr' and/or 'weight_decay'"):
        create_optimizer(net, "sgd", lr=0.1, group_scales={"norm_bias": {"momentum": 2.0}})
    with pytest.raises(ValueError, match="momentum must be in"):
        apply_batchnorm_options(net, momentum=1.5)


def test_mixup_and_cutmix_together_follow_timms_switch_semantics():
    """prob: the share of mixed batches; switch_prob: the share of those mixed by CutMix."""
    torch.manual_seed(0)
    cb = C.MixupCutMix(mixup_alpha=0.4, cutmix_alpha=1.0, prob=0.6, switch_prob=0.25)
    x = torch.arange(16.0).reshape(16, 1, 1, 1).expand(16, 1, 6, 6).contiguous()  # image i is filled with i
    y = torch.arange(16)
    kinds = []
    for _ in range(1200):
        state = type("S", (), {"inputs": x, "targets": y, "mix": None})()
        cb.on_batch_start(state)
        if state.mix is None:
            kinds.append("none")
            assert torch.equal(state.inputs, x)
        elif torch.isin(state.inputs, x.unique()).all():  # every pixel copied from an image: CutMix
            kinds.append("cutmix")
        else:
            kinds.append("mixup")
    mixed = 1 - kinds.count("none") / len(kinds)
    assert mixed == pytest.approx(0.6, abs=0.05)
    assert kinds.count("cutmix") / (len(kinds) - kinds.count("none")) == pytest.approx(0.25, abs=0.05)


def test_config_with_mixup_and_cutmix_builds_one_mixer():
    from trickbag.train.build import apply_tricks
    from trickbag.train.config import load_config, parse_trick

    cfg = load_config({"data": {"name": "synthetic"}, "model": {"name": "mlp"},
                       "tricks": ["mixup:alpha=0.2,prob=0.5", {"cutmix": {"alpha": 1.0, "switch_prob": 0.3}}]})
    _, plan = apply_tricks(cfg)
    (mixer,) = [c for c in plan.callbacks if c.rewrites_batch]
    assert isinstance(mixer, C.MixupCutMix)
    assert (mixer.mixup_alpha, mixer.cutmix_alpha, mixer.prob, mixer.switch_prob) == (0.2, 1.0, 0.5, 0.3)
    assert parse_trick("mixup:alpha=0.2,prob=0.5").params == {"alpha": 0.2, "prob": 0.5}  # the docstring's example
    _, plan = apply_tricks(load_config({"data": {"name": "synthetic"}, "model": {"name": "mlp"},
                                        "tricks": ["mixup:alpha=0.2,prob=0.5"]}))
    assert isinstance(plan.callbacks[0], C.Mixup) and plan.callbacks[0].prob == 0.5
    bad = load_config({"data": {"name": "synthetic"}, "model": {"name": "mlp"},
                       "tricks": ["mixup:prob=0.5", "cutmix:prob=0.7"]})
    with pytest.raises(ValueError, match="give prob once"):
        apply_tricks(bad)


def test_the_progress_bar_says_that_a_run_stopped_and_why():
    import io

    out = io.StringIO()
    scores = iter([0.5, 0.4, 0.3, 0.2])

    class Score(C.Callback):
        def on_eval_end(self, state):
            state.metrics["score"] = next(scores)

    run([Score(), C.EarlyStopping(monitor="score", mode="max", patience=2), C.ProgressBar(stream=out)], epochs=4)
    assert "stopped: early stopping after epoch 3: score has not improved for 2 epochs" in out.getvalue()


def test_a_cuda_loader_without_cuda_says_so():
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    splits = data(n=32)
    with pytest.raises(ValueError, match="device 'cuda' requested but CUDA is not available"):
        DeviceLoader(splits.train, 8, device="cuda")
