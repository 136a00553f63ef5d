"""Experiment tracking, offline: MLflow's file store and W&B's offline mode, read back."""

from __future__ import annotations

import json
import time

import pytest
import torch

from trickbag.data import DeviceLoader
from trickbag.train import Trainer
from trickbag.train import callbacks as C

from .helpers import data, mlp


@pytest.fixture(autouse=True)
def _tracking_in_tmp(tmp_path, monkeypatch):
    """MLflow puts a SQLite store's artefacts under ``./mlruns`` in the working folder, and a
    run without a tracking URI there too: run from a temporary folder, with a temporary default
    store, so nothing lands in the checkout."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'default-mlflow.db'}")


def _fit(logger, run_dir, epochs=2):
    run_dir.mkdir(parents=True, exist_ok=True)
    splits = data(n=128)
    t = Trainer(mlp(), DeviceLoader(splits.train, 32, seed=0), val_data=DeviceLoader(splits.test, 64, shuffle=False),
                optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.05), callbacks=[logger], epochs=epochs,
                progress=False, run_dir=run_dir)
    t.fit()
    (run_dir / "results.json").write_text(json.dumps({"final": t.state.metrics["val_acc"]}))
    logger.finish([run_dir / "results.json", run_dir / "missing.pt"])
    return t


def test_mlflow_local_store_gets_config_metrics_and_artefacts(tmp_path):
    """A local SQLite store, MLflow's recommended replacement for the file store (which MLflow 3
    refuses unless told to)."""
    pytest.importorskip("mlflow", reason="mlflow is not installed (extra: mlflow)")
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = C.MLflowLogger(tracking_uri=uri, experiment="demo-study", run_name="arm-a", tags={"arm": "a"},
                            every_steps=2, config={"optimizer": {"name": "sgd", "lr": 0.05}, "tricks": ["mixup"]})
    t = _fit(logger, tmp_path / "run")
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(logger.run_id)
    assert run.data.params["optimizer.lr"] == "0.05" and run.data.params["tricks"] == "['mixup']"
    assert run.data.tags["arm"] == "a" and run.info.status == "FINISHED" and run.info.run_name == "arm-a"
    history = client.get_metric_history(logger.run_id, "val_acc")
    assert [m.step for m in history] == [4, 8]  # one value per epoch, at its step
    assert history[-1].value == pytest.approx(t.state.history[-1]["val_acc"])
    assert len(client.get_metric_history(logger.run_id, "train_loss_step")) == 4  # every 2 of 8 steps
    assert [a.path for a in client.list_artifacts(logger.run_id)] == ["results.json"]  # missing files are skipped


def test_wandb_offline_run_records_config_history_and_summary(tmp_path, monkeypatch):
    """W&B's offline mode writes the run to a local .wandb record log (synced later with
    `wandb sync`): the run's summary, and the records in that file, hold what was logged."""
    pytest.importorskip("wandb", reason="wandb is not installed (extra: wandb)")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = C.WandbLogger(project="trickbag-test", mode="offline", dir=tmp_path / "wb", group="demo-study",
                           run_name="arm-a", every_steps=2, config={"optimizer": {"lr": 0.05}})
    seen = {}

    class Peek(C.Callback):  # the run's summary before finish() closes it
        def on_fit_end(self, state):
            seen.update(dict(logger.run.summary), config=dict(logger.run.config))

    splits = data(n=128)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    t = Trainer(mlp(), DeviceLoader(splits.train, 32, seed=0), val_data=DeviceLoader(splits.test, 64, shuffle=False),
                optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.05), callbacks=[logger, Peek()], epochs=2,
                progress=False, run_dir=run_dir)
    t.fit()
    logger.finish([])
    assert seen["val_acc"] == pytest.approx(t.state.history[-1]["val_acc"])
    assert seen["final_val_acc"] == pytest.approx(t.state.metrics["val_acc"])
    assert seen["config"] == {"optimizer": {"lr": 0.05}}
    (log,) = (tmp_path / "wb" / "wandb").glob("offline-run-*/run-*.wandb")
    keys = (b"val_acc", b"train_loss_step", b"final_val_acc", b"demo-study", b"arm-a")
    for _ in range(300):  # W&B's service process may still be flushing the file when finish() returns
        raw = log.read_bytes()
        if all(k in raw for k in keys):
            break
        time.sleep(0.1)
    for key in keys:
        assert key in raw, key


def test_a_missing_extra_names_it(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name.split(".")[0] == "mlflow":
            raise ImportError("no mlflow here")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    monkeypatch.delitem(__import__("sys").modules, "mlflow", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'trickbag\[mlflow\]'"):
        C.MLflowLogger()


def test_config_loggers_track_a_cli_run_and_each_search_trial_under_the_study(tmp_path, monkeypatch):
    """train.loggers: [mlflow]: `trickbag train` logs its run with the run's files; `trickbag
    search` logs one run per trial in an experiment named after the search."""
    pytest.importorskip("mlflow", reason="mlflow is not installed (extra: mlflow)")
    import yaml
    from mlflow import MlflowClient

    from trickbag.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = {"data": {"name": "synthetic", "options": {"num_train": 160, "num_test": 64, "shape": [8], "num_classes": 3},
                    "batch_size": 32},
           "model": {"name": "mlp", "hidden": [16]}, "optimizer": {"name": "adamw", "lr": 0.01},
           "train": {"epochs": 2, "progress": False, "loggers": [{"mlflow": {"tracking_uri": uri}}]}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 0
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("trickbag").experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert {"results.json", "model.pt", "config.yaml"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    assert run.data.params["model.name"] == "mlp"

    space = tmp_path / "space.yaml"
    space.write_text("lr: loguniform(1e-3, 0.1)\n")
    assert main(["search", "--config", str(path), "--space", str(space), "--trials", "3", "--stages", "coarse",
                 "--study", "tracked-search", "--out", str(tmp_path / "search")]) == 0
    exp = client.get_experiment_by_name("tracked-search")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) >= 3 and {r.data.tags["stage"] for r in runs} >= {"coarse"}
    with pytest.raises(ValueError, match="unknown logger in train.loggers 'mlflw'"):
        from trickbag.train.build import build_run
        from trickbag.train.config import load_config

        build_run(load_config({**cfg, "train": {**cfg["train"], "loggers": ["mlflw"]}}))


def test_each_ablation_trial_is_a_tracked_run_under_the_study(tmp_path):
    pytest.importorskip("mlflow", reason="mlflow is not installed (extra: mlflow)")
    import yaml
    from mlflow import MlflowClient

    from trickbag.ablation import run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = {"data": {"name": "synthetic", "options": {"num_train": 160, "num_test": 64, "shape": [8], "num_classes": 3},
                    "batch_size": 32},
           "model": {"name": "mlp", "hidden": [16]}, "optimizer": {"name": "adamw", "lr": 0.01},
           "train": {"epochs": 1, "progress": False, "deterministic": True,
                     "loggers": [{"mlflow": {"tracking_uri": uri}}]}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run(path, "ema:decay=0.9", seeds=2, out=tmp_path / "abl", progress=False, study_name="tracked-ablation")
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("tracked-ablation").experiment_id])
    assert sorted((r.data.tags["arm"], r.data.tags["seed"]) for r in runs) == [
        ("baseline", "0"), ("baseline", "1"), ("ema:decay=0.9", "0"), ("ema:decay=0.9", "1")]
    assert "Trials ran with deterministic algorithms" in (tmp_path / "abl" / "report.md").read_text()
