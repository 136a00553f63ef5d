"""Experiment tracking: MLflow and Weights & Biases loggers (the ``mlflow`` and ``wandb`` extras)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from trickbag._optional import require
from trickbag._validate import check_choice, check_positive_int
from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["MLflowLogger", "WandbLogger", "flatten_config", "TRACKERS"]


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer.lr": 0.1}``; lists become their text.

    Example:
        >>> flatten_config({"optimizer": {"name": "sgd", "lr": 0.1}, "tricks": ["mixup"]})
        {'optimizer.name': 'sgd', 'optimizer.lr': 0.1, 'tricks': "['mixup']"}
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_config(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = str(list(value))
        else:
            out[name] = value
    return out


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)) and k not in ("epoch", "step")}


class _Tracker(Callback):
    """What both loggers share: the training loss and learning rate every ``every_steps`` updates
    (one device sync each), every numeric epoch metric, the final metrics, then, when the run is
    finished (``trickbag train`` and the ablation and search workers call :meth:`finish` after
    writing the run's files; otherwise at interpreter exit), the files as artefacts. Only the
    main process logs."""

    def __init__(self, every_steps: int = 50, config: Mapping[str, Any] | None = None):
        check_positive_int("every_steps", every_steps)
        self.every_steps = every_steps
        self.config = dict(config or {})
        self._pending: list[tuple[str, float, int]] = []
        self._open = False

    # backend hooks
    def _start(self, state: TrainState) -> None: ...  # pragma: no cover - abstract
    def _log(self, rows: list[tuple[str, float, int]]) -> None: ...  # pragma: no cover
    def _end(self, files: list[Path], failed: bool) -> None: ...  # pragma: no cover

    def _final(self, metrics: dict[str, float], step: int) -> None:
        self._log([(f"final_{k}", v, step) for k, v in metrics.items()])

    def on_fit_start(self, state: TrainState) -> None:
        if state.is_main and not self._open:
            self._start(state)
            self._open = True

    def on_step_end(self, state: TrainState) -> None:
        if self._open and state.step % self.every_steps == 0:
            self._pending += [("train_loss_step", float(state.loss.detach()), state.step), ("lr", state.lr, state.step)]

    def on_epoch_end(self, state: TrainState) -> None:
        if self._open:
            self._pending += [(k, v, state.step) for k, v in _numbers(state.metrics).items()]
            self._log(self._pending)
            self._pending = []

    def on_fit_end(self, state: TrainState) -> None:
        if self._open:
            if self._pending:
                self._log(self._pending)
                self._pending = []
            self._final(_numbers(state.metrics), state.step)

    def finish(self, files: Iterable[str | Path] = (), *, failed: bool = False) -> None:
        """Upload ``files`` (those that exist) as the run's artefacts and close the tracked run."""
        if not self._open:
            return
        self._end([Path(f) for f in files if Path(f).is_file()], failed)
        self._open = False


class MLflowLogger(_Tracker):
    """Log a run to MLflow (through its client, so several runs in one process never share a
    global active run): the config as parameters, metrics per step and epoch, artefacts.

    Args:
        tracking_uri: where runs go (``file:./mlruns``, ``sqlite:///mlflow.db``, a server URL);
            None: MLflow's default (``MLFLOW_TRACKING_URI`` or ``./mlruns``). A new experiment
            in a SQLite store keeps its artefacts under ``./mlruns`` of the working folder
            (MLflow's default artefact root), wherever the database is.
        experiment: the experiment (ablations and searches use the study's name).
        run_name, tags: the run's name and tags (ablation trials tag arm and seed).
        every_steps: log the step loss and learning rate this often.
        config: the run's configuration, logged as flattened parameters.
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str = "trickbag", run_name: str | None = None,
                 tags: Mapping[str, str] | None = None, every_steps: int = 50, config: Mapping[str, Any] | None = None):
        super().__init__(every_steps, config)
        require("mlflow", "mlflow", "MLflowLogger")
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.tags = dict(tags or {})
        self.run_id: str | None = None

    def _start(self, state: TrainState) -> None:
        from mlflow import MlflowClient

        self._client = client = MlflowClient(tracking_uri=self.tracking_uri)
        exp = client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(self.experiment)
        tags = {"trickbag.seed": str(state.seed), **{k: str(v) for k, v in self.tags.items()}}
        run = client.create_run(exp_id, run_name=self.run_name, tags=tags)
        self.run_id = run.info.run_id
        from mlflow.entities import Param

        params = [Param(k, str(v)[:500]) for k, v in flatten_config(self.config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters a batch
            client.log_batch(self.run_id, params=params[i:i + 100])

    def _log(self, rows: list[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric

        now = _millis()
        metrics = [Metric(k, v, now, step) for k, v, step in rows]
        for i in range(0, len(metrics), 1000):
            self._client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def _end(self, files: list[Path], failed: bool) -> None:
        for f in files:
            self._client.log_artifact(self.run_id, str(f))
        self._client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


class WandbLogger(_Tracker):
    """Log a run to Weights & Biases: the config, metrics per step and epoch, artefacts.

    Args:
        project: the W&B project.
        mode: ``"online"``, ``"offline"`` (written under ``dir``, synced later with ``wandb sync``)
            or ``"disabled"``; None: W&B's default (``WANDB_MODE``).
        dir: where W&B writes its files (default: the run directory).
        group: runs of one ablation or search share a group (the study's name).
        run_name, tags: the run's name and tags.
        every_steps, config: as :class:`MLflowLogger`.
    """

    def __init__(self, project: str = "trickbag", mode: str | None = None, dir: str | Path | None = None,
                 group: str | None = None, run_name: str | None = None, tags: Iterable[str] = (), every_steps: int = 50,
                 config: Mapping[str, Any] | None = None):
        super().__init__(every_steps, config)
        require("wandb", "wandb", "WandbLogger")
        if mode is not None:
            check_choice("mode", mode, ("online", "offline", "disabled"))
        self.project, self.mode, self.dir, self.group, self.run_name = project, mode, dir, group, run_name
        self.tags = list(tags)
        self.run = None

    def _start(self, state: TrainState) -> None:
        import wandb

        where = self.dir if self.dir is not None else state.run_dir
        if where is not None:
            Path(where).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=self.project, mode=self.mode, dir=str(where) if where is not None else None,
                              group=self.group, name=self.run_name, tags=self.tags or None, config=self.config,
                              reinit="create_new")

    def _log(self, rows: list[tuple[str, float, int]]) -> None:
        by_step: dict[int, dict[str, float]] = {}
        for k, v, step in rows:
            by_step.setdefault(step, {})[k] = v
        for step in sorted(by_step):
            self.run.log(by_step[step], step=step, commit=True)

    def _final(self, metrics: dict[str, float], step: int) -> None:
        self.run.summary.update({f"final_{k}": v for k, v in metrics.items()})  # W&B's place for end results

    def _end(self, files: list[Path], failed: bool) -> None:
        import wandb

        if files:
            artifact = wandb.Artifact(f"run-{self.run.id}-files", type="run-files")
            for f in files:
                artifact.add_file(str(f))
            self.run.log_artifact(artifact)
        self.run.finish(exit_code=1 if failed else 0)


def _millis() -> int:
    import time

    return int(time.time() * 1000)


#: Config names of the loggers (``train.loggers``).
TRACKERS: dict[str, type[_Tracker]] = {"mlflow": MLflowLogger, "wandb": WandbLogger}
