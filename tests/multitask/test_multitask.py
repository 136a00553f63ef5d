"""Multi-task learning: task losses against their formulas, the Trainer with dict targets and
per-task metrics, soft sharing, and the `trickbag multitask` comparison end to end."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trickbag.data import DeviceLoader, synthetic
from trickbag.losses import MultiTaskLoss, parameter_distance, soft_sharing_penalty, uncertainty_weighted_loss
from trickbag.multitask import MultiTask, SoftSharing, TaskBatches, label_map, parse_task, split_head
from trickbag.train import Trainer
from trickbag.train.callbacks import SoftSharingPenalty


def test_uncertainty_weighting_against_kendalls_formula():
    sigma = {"depth": 0.5, "seg": 2.0}
    losses = {"depth": torch.tensor(3.0), "seg": torch.tensor(0.7)}
    log_vars = {t: torch.tensor(math.log(s**2)) for t, s in sigma.items()}
    kinds = {"depth": "regression", "seg": "classification"}
    # eq. 7: 1/(2 sigma1^2) L1 + 1/sigma2^2 L2 + log sigma1 + log sigma2
    expected = 3.0 / (2 * 0.25) + 0.7 / 4.0 + math.log(0.5) + math.log(2.0)
    assert uncertainty_weighted_loss(losses, log_vars, kinds).item() == pytest.approx(expected, rel=1e-6)
    # the optimum of s for a classification task with loss L is s = log(2 L)
    s = torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([s], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        uncertainty_weighted_loss({"a": torch.tensor(0.8)}, {"a": s}).backward()
        opt.step()
    assert s.item() == pytest.approx(math.log(1.6), abs=1e-3)
    with pytest.raises(ValueError, match="unknown kind of task 'seg' 'regresion'"):
        uncertainty_weighted_loss(losses, log_vars, {"seg": "regresion"})
    with pytest.raises(ValueError, match=r"log_vars has no entry for tasks \['seg'\]"):
        uncertainty_weighted_loss(losses, {"depth": log_vars["depth"]})


def test_multitask_loss_fixed_and_learned(gen):
    out = {"a": torch.randn(6, 3, generator=gen), "b": torch.randn(6, 1, generator=gen)}
    y = {"a": torch.randint(0, 3, (6,), generator=gen), "b": torch.randn(6, 1, generator=gen)}
    fixed = MultiTaskLoss(["a", "b"], weights={"a": 1.0, "b": 0.25})
    ce, mse = nn.functional.cross_entropy(out["a"], y["a"]), nn.functional.mse_loss(out["b"], y["b"])
    assert torch.allclose(fixed(out, y), ce + 0.25 * mse)
    learned = MultiTaskLoss(["a", "b"], weighting="uncertainty", kinds={"b": "regression"})
    assert torch.allclose(learned(out, y), ce + 0.5 * mse)  # s = 0: weights 1 and 1/2
    assert learned.task_weights() == {"a": 1.0, "b": 0.5}
    with pytest.raises(ValueError, match="weights are fixed task weights"):
        MultiTaskLoss(["a"], weights={"a": 1.0}, weighting="uncertainty")
    with pytest.raises(ValueError, match=r"the targets has no entry for tasks \['b'\]"):
        fixed(out, {"a": y["a"]})


def test_parameter_distance_and_soft_sharing_penalty():
    a, b, c = nn.Linear(3, 2), nn.Linear(3, 2), nn.Linear(3, 2)
    manual = lambda m, n: sum(((p - q) ** 2).sum() for p, q in zip(m.parameters(), n.parameters()))  # noqa: E731
    assert torch.allclose(parameter_distance(a, b), manual(a, b))
    assert torch.allclose(soft_sharing_penalty([a, b, c], 0.5), 0.5 * (manual(a, b) + manual(a, c) + manual(b, c)))
    assert torch.allclose(parameter_distance(a, b, prefixes=["weight"]), ((a.weight - b.weight) ** 2).sum())
    with pytest.raises(ValueError, match="share no parameter"):
        parameter_distance(nn.Linear(3, 2), nn.Linear(4, 5))


def two_task_data():
    s = synthetic(num_train=384, num_test=128, shape=(10,), num_classes=4, noise=0.8, seed=5)
    coarse = label_map([0, 0, 1, 1])
    tasks = {"fine": None, "coarse": coarse}
    return (TaskBatches(DeviceLoader(s.train, 32, seed=1), tasks),
            TaskBatches(DeviceLoader(s.test, 64, shuffle=False), tasks))


def test_trainer_takes_dict_targets_and_reports_each_task():
    train, test = two_task_data()
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(10, 32), nn.ReLU())
    loss = MultiTaskLoss(["fine", "coarse"], weighting="uncertainty")
    model = MultiTask(trunk, {"fine": nn.Linear(32, 4), "coarse": nn.Linear(32, 2)}, loss=loss)
    t = Trainer(model, train, val_data=test, loss=loss, optimizer={"name": "adamw", "lr": 0.01}, epochs=4,
                progress=False, track_train_acc=True)
    history = t.fit()
    last = history[-1]
    assert last["val_fine_acc"] > 0.7 and last["val_coarse_acc"] > 0.8
    assert last["val_acc"] == pytest.approx((last["val_fine_acc"] + last["val_coarse_acc"]) / 2)
    assert {"val_fine_loss", "val_coarse_loss"} <= set(last)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert any(v.item() != 0 for v in loss.log_vars.values())  # the task weights were learned
    preds = t.predict(test)
    assert set(preds) == {"fine", "coarse"} and preds["coarse"].shape == (128, 2)


def test_soft_sharing_pulls_the_task_models_together():
    train, test = two_task_data()

    def fit(callbacks):
        torch.manual_seed(0)
        net = SoftSharing({"fine": nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4)),
                           "coarse": nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 2))}, coefficient=0.5)
        Trainer(net, train, loss=MultiTaskLoss(["fine", "coarse"]), callbacks=callbacks,
                optimizer={"name": "sgd", "lr": 0.05}, epochs=3, progress=False).fit()
        return parameter_distance(net.models["fine"], net.models["coarse"]).item()

    assert fit([SoftSharingPenalty()]) < 0.5 * fit([])
    with pytest.raises(ValueError, match="needs a trickbag.multitask.SoftSharing model"):
        Trainer(nn.Linear(10, 4), train, callbacks=[SoftSharingPenalty()], epochs=1, progress=False).fit()


def test_split_head_of_the_reference_models():
    from trickbag.models import mlp, resnet_cifar, small_cnn

    for model, x in ((mlp(16, 3, hidden=(8,)), torch.randn(2, 16)), (small_cnn(1, 3, width=4), torch.randn(2, 1, 8, 8)),
                     (resnet_cifar(8, in_channels=1, num_classes=3, width=4), torch.randn(2, 1, 8, 8))):
        trunk, features = split_head(model)
        assert trunk(x).shape == (2, features)
    assert parse_task("c=1,0,1") == ("c", [1, 0, 1])
    with pytest.raises(ValueError, match="neither a comma-separated class map"):
        parse_task("c=coarse")


def test_cli_multitask_end_to_end(tmp_path, capsys):
    import yaml

    from trickbag.cli import main

    cfg = tmp_path / "mt.yaml"
    cfg.write_text(yaml.safe_dump({
        "data": {"name": "synthetic", "options": {"num_train": 400, "num_test": 100, "shape": [8], "num_classes": 4}},
        "model": {"name": "mlp", "hidden": [16]}, "optimizer": {"name": "adamw", "lr": 0.01},
        "train": {"epochs": None, "steps": 12, "threads": 1}}))
    assert main(["multitask", "--config", str(cfg), "--task", "coarse=0,0,1,1", "--subsets", "60,200", "--seeds", "2",
                 "--out", str(tmp_path / "mt"), "--quiet"]) == 0
    out = capsys.readouterr().out
    for arm in ("single-task", "hard sharing", "hard, uncertainty weights", "soft sharing"):
        assert out.count(f"| {arm} |") == 2
    assert (tmp_path / "mt" / "accuracy.png").exists()


def test_scarce_main_labels_are_missing_not_wrong(tmp_path):
    """With main_labels, the fine task is learned from that many labels while the coarse one
    keeps all of them; a batch without any fine label contributes zero, not NaN."""
    from trickbag.multitask import run

    crit = MultiTaskLoss(["fine"])
    assert crit({"fine": torch.randn(4, 3)}, {"fine": torch.full((4,), -100)}).item() == 0.0
    raw = {"data": {"name": "synthetic", "options": {"num_train": 300, "num_test": 100, "shape": [8], "num_classes": 4}},
           "model": {"name": "mlp", "hidden": [16]}, "optimizer": {"name": "adamw", "lr": 0.01},
           "train": {"epochs": None, "steps": 20}}
    result = run(raw, {"coarse": [0, 0, 1, 1]}, subsets=[200], seeds=1, arms=["single-task", "hard sharing"],
                 main_labels=10, out=tmp_path, progress=False)
    trials = list(result["trials"].values())
    assert result["main_labels"] == 10 and len(trials) == 2
    assert all(0.0 <= t["acc"]["fine"] <= 1.0 and t["acc"]["coarse"] > 0.5 for t in trials)
