"""``build_run``: everything a config describes, assembled into a :class:`Run` whose ``fit()``
trains, evaluates the test split once and writes the results; ``check_names`` fails fast on
unknown names before any data is loaded."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trickbag import catalog
from trickbag._atomic import save_torch, write_json
from trickbag._validate import unknown
from trickbag.train._imports import import_object, is_import_path
from trickbag.train.build.data import DATASETS, _normalizer, load_splits
from trickbag.train.build.model import (LOSSES, PEER_MODELS, build_loss, build_metrics, build_model, build_schedule,
                                        check_optimizer, optimizer_factory)
from trickbag.train.build.trackers import _logger_specs, build_trackers
from trickbag.train.build.tricks import apply_tricks
from trickbag.train.config import RunConfig
from trickbag.train.distributed import world
from trickbag.train.trainer import Trainer, _resolve_device, seed_everything

__all__ = ["Run", "build_run", "check_names"]


def check_names(cfg: RunConfig) -> None:
    """Fail fast, before any data is loaded, on unknown data set, model, loss, optimizer,
    schedule or loader names."""
    from trickbag.models import MODELS
    from trickbag.optim import list_optimizers

    checks = [
        ("data set", cfg.data.name, [*DATASETS, "package.module:callable"]),
        ("data.loader", cfg.data.loader, ("device", "torch")),
        ("model", cfg.model["name"], [*MODELS, *(f"{lib}:ARCH" for lib in PEER_MODELS), "package.module:callable"]),
        ("loss", cfg.loss["name"], [*LOSSES, "focal_loss", "sigmoid_focal_loss", "package.module:callable"]),
        ("optimizer", cfg.optimizer["name"], list_optimizers()),
    ]
    if cfg.schedule:
        checks.append(("schedule", cfg.schedule["name"], [t.name for t in catalog.all_tricks() if t.use == "schedule"]))
    for what, name, valid in checks:
        if what == "model" and name.partition(":")[0] in PEER_MODELS and name.partition(":")[2]:
            continue  # the library checks the architecture when the model is built
        if what in ("data set", "model", "loss") and is_import_path(name):
            import_object(name, {"data set": "data"}.get(what, what),  # importable, and callable
                          libraries=tuple(PEER_MODELS) if what == "model" else ())
            continue
        if name not in valid:
            raise unknown(what, name, valid)


@dataclass
class Run:
    """A configured run: ``fit()`` trains, evaluates the test split once, and writes results."""

    config: RunConfig
    splits: Any
    trainer: Trainer
    test_data: Any
    run_dir: Path | None

    def fit(self) -> dict[str, Any]:
        """Train (or continue a resumed run), evaluate the test split once, and write
        ``model.pt`` and ``results.json`` atomically. ``wall_time`` sums the time spent
        training over every resume.

        A run that diverged (the NaN guard stopped it, or its weights or buffers are not
        finite at the end) never writes non-finite weights: ``model.pt`` gets the last finite
        ones (the current weights when the guard stopped before they were spoiled, else the
        last checkpoint's), or is not written; ``results["diverged"]`` is true and
        ``results["kept"]`` says which weights were kept.
        """
        history = self.trainer.fit()
        state = self.trainer.state
        results: dict[str, Any] = {"history": history, "wall_time": self.trainer.fit_time,
                                   "stopped": state.stop_reason or None}
        final = dict(state.metrics)
        results["final"] = final
        if not state.diverged:
            bad = _nonfinite(state.raw_model.state_dict())
            if bad:
                state.diverged = True
                results["stopped"] = (f"the weights are not finite at the end of the run ({', '.join(bad[:3])}"
                                      f"{', ...' if len(bad) > 3 else ''}); lower the learning rate or clip gradients")
        if self.test_data is not None and not state.diverged:
            results["test"] = self.trainer.evaluate(self.test_data, prefix="test")
            for cb in self.trainer.callbacks:  # metrics a callback computes (test_robust_acc ...)
                if hasattr(cb, "test_metrics"):
                    results["test"].update(cb.test_metrics(state, self.test_data))
        main = self.run_dir is not None and state.is_main
        if state.diverged:
            results["diverged"] = True
            results["kept"] = self._keep_finite_weights(write=main)
        elif main:
            save_torch(state.raw_model.state_dict(), self.run_dir / "model.pt")
            results["best_model"] = self._write_best_model()
        if main:
            results["model_input"] = self.model_input()
            write_json(self.run_dir / "results.json", _plain(results))
        self._finish_tracking(diverged=bool(state.diverged))
        return results

    def _finish_tracking(self, *, diverged: bool) -> None:
        """Close the runs of train.loggers, with the run's files as artefacts."""
        names = ("config.yaml", "results.json", "model.pt", "best_model.pt", "report.html", "report.md")
        files = [self.run_dir / n for n in names] if self.run_dir is not None else []
        for cb in self.trainer.callbacks:
            if callable(getattr(cb, "finish", None)) and hasattr(cb, "_open"):
                cb.finish(files, failed=diverged)

    def model_input(self) -> dict[str, Any]:
        """What rebuilding the model needs without the data (``trickbag export``): the input
        shape and dtype the model sees, the class count, the vocabulary size."""
        train = self.splits.train
        floating = train.inputs.is_floating_point() or train.kind == "image"  # images reach the model normalised
        return {"input_shape": list(self.splits.input_shape), "num_classes": self.splits.num_classes,
                "input_dtype": "float32" if floating else str(train.inputs.dtype).replace("torch.", ""),
                "vocab_size": len(self.splits.vocab) if self.splits.vocab else None}

    def _write_best_model(self) -> str:
        """``best_model.pt``: the weights alone (a state dict, loadable with weights_only=True) of
        the best epoch kept by ``train.keep_best``, else the weights the run ended with."""
        from trickbag.train.checkpoint import load_checkpoint
        from trickbag.train.callbacks import Checkpoint

        keeper = next((c for c in self.trainer.callbacks if isinstance(c, Checkpoint) and c.keep_best and c.best), None)
        if keeper is not None:
            _, epoch, name = keeper.best[0]
            path = keeper._dir(self.trainer.state) / name
            if path.exists():
                save_torch(load_checkpoint(path)["model"], self.run_dir / "best_model.pt")
                return f"epoch {epoch}, the best by {keeper.monitor} ({keeper.mode})"
        save_torch(self.trainer.state.raw_model.state_dict(), self.run_dir / "best_model.pt")
        return "the final weights (no train.keep_best)"

    def _keep_finite_weights(self, *, write: bool) -> str:
        """After a divergence: write the last finite weights as model.pt; say which they are."""
        from trickbag.train.checkpoint import load_checkpoint

        state = self.trainer.state
        current = state.raw_model.state_dict()
        if _finite(current):
            if write:
                save_torch(current, self.run_dir / "model.pt")
            where = "model.pt holds" if write else "the model keeps"
            return (f"{where} the weights after step {state.step}, the last finite ones "
                    "(the update that diverged was skipped)")
        last = self.run_dir / "checkpoints" / "last.pt" if self.run_dir is not None else None
        if last is not None and last.exists():
            ckpt = load_checkpoint(last)
            if _finite(ckpt["model"]):
                if write:
                    save_torch(ckpt["model"], self.run_dir / "model.pt")
                return (f"the weights (or buffers) after step {state.step} are not finite; model.pt holds the last "
                        f"finite ones, from the checkpoint of step {ckpt['counters']['step']} (checkpoints/last.pt)")
        return (f"the weights (or buffers) after step {state.step} are not finite and no checkpoint holds finite "
                "ones: no weights were kept (no model.pt)")

    def metric_names(self) -> list[str]:
        """The names of the metrics this run reports at the end of an epoch (what an ablation
        or a search may compare), without training: the loop's own, the validation metrics
        the data allows, those the callbacks add, and the test split's (evaluated once, at the
        end of the run)."""
        names = {"epoch", "step", "lr", "train_loss", "epoch_time", "samples_per_sec"}
        if self.trainer.track_train_acc:
            names.add("train_acc")
        val_names: set[str] = set()
        val = getattr(self.splits, "val", None)
        if self.trainer.val_data is not None and val is not None:
            val_names.add("val_loss")
            targets = val.targets
            if targets.dim() == 1 and not targets.is_floating_point():
                val_names.add("val_acc")
                if self.splits.num_classes > 5:
                    val_names.add("val_top5")
            val_names |= {f"val_{k}" for k in self.trainer.extra_metrics}
        names |= val_names
        test = getattr(self.splits, "test", None)
        if self.test_data is not None and test is not None:  # evaluated once, after the last epoch
            names.add("test_loss")
            if test.targets.dim() == 1 and not test.targets.is_floating_point():
                names |= {"test_acc", "test_top5"} if self.splits.num_classes > 5 else {"test_acc"}
            names |= {f"test_{k}" for k in self.trainer.extra_metrics}
        for cb in self.trainer.callbacks:
            extra = getattr(cb, "reported_metrics", None)
            if callable(extra):
                names |= set(extra(sorted(val_names)))
        return sorted(names)


def _nonfinite(state_dict: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors (weights and buffers) with a NaN or an infinity."""
    return [k for k, t in state_dict.items()
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]


def _finite(state_dict: dict[str, Any]) -> bool:
    return not _nonfinite(state_dict)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj



def build_run(cfg: RunConfig, *, run_dir: str | Path | None = None, splits=None, callbacks=(),
              tracking: dict[str, Any] | None = None) -> Run:
    """Everything a config describes, ready to ``fit()``. Unknown names and parameters fail
    here, before any training. ``splits`` reuses already loaded data. ``tracking`` names the
    tracked run of ``train.loggers`` (``group``: the ablation's or search's study, ``run_name``,
    ``tags``), so the trials of one study are grouped."""
    from trickbag.augment import build_augment, fit_normalizer
    from trickbag.data import DeviceLoader, TorchLoader
    from trickbag.train import callbacks as C

    cfg.validate()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    cfg, plan = apply_tricks(cfg)
    check_names(cfg)
    seed = cfg.train.seed
    rank, _, size = world()
    splits = splits if splits is not None else load_splits(cfg)
    device = _resolve_device(cfg.train.device)
    image = splits.train.kind == "image"
    normalizer = _normalizer(splits.train.inputs) if image and not splits.train.inputs.is_floating_point() else None
    augment = build_augment(cfg.data.augment) if cfg.data.augment else None
    if plan.loader_augment:
        from trickbag.augment import Compose

        augment = Compose([*(augment._ops if augment is not None else []), *plan.loader_augment])
    if augment is not None and not image:
        raise ValueError(f"data.augment needs image data; {cfg.data.name!r} gives {splits.train.kind} inputs")
    loader_cls = {"device": DeviceLoader, "torch": TorchLoader}.get(cfg.data.loader)
    if loader_cls is None:
        raise unknown("data.loader", cfg.data.loader, ("device", "torch"))
    extra = {"num_workers": cfg.data.num_workers, "batch_keys": tuple(cfg.data.batch_keys)} if loader_cls is TorchLoader else {}
    common = dict(device=device, normalize=normalizer, rank=rank, world_size=size, channels_last=cfg.train.channels_last, **extra)
    train = loader_cls(splits.train, cfg.data.batch_size, shuffle=True, augment=augment, seed=seed, **common)
    evals = {k: loader_cls(getattr(splits, k), cfg.data.eval_batch_size, shuffle=False, drop_last=False, **common)
             for k in ("val", "test") if getattr(splits, k) is not None}

    seed_everything(seed)  # initial weights depend on the seed alone (paired across ablation arms)
    try:
        model = build_model(cfg, splits)
    except TypeError as exc:  # a value of the wrong type reached the constructor
        raise ValueError(f"model {cfg.model['name']}: {exc}") from None
    for entry, params in plan.model:
        out = entry.load_apply()(model, **params)
        model = out if isinstance(out, nn.Module) else model  # some return a count, not the model
    try:
        criterion = build_loss(cfg)
    except TypeError as exc:
        raise ValueError(f"loss {cfg.loss['name']}: {exc}") from None
    rng = torch.get_rng_state()
    check_optimizer(cfg.optimizer, model)
    torch.set_rng_state(rng)
    spe = len(train) // cfg.train.grad_accum_steps
    total = cfg.train.steps if cfg.train.epochs is None else cfg.train.epochs * spe
    if cfg.train.steps is not None:
        total = min(total, cfg.train.steps)
    schedule = build_schedule(cfg.schedule, spe, total)
    run_path = Path(run_dir) if run_dir is not None else None
    cbs = list(plan.callbacks) + list(callbacks)
    if cfg.train.nan_guard:
        cbs.insert(0, C.NaNGuard())
    loggers = _logger_specs(cfg)
    if run_path is not None:
        cbs.append(C.MetricsLogger(every_steps=cfg.train.log_every,
                                   tensorboard=True if "tensorboard" in loggers else None))
        if cfg.train.checkpoint_every_steps or cfg.train.checkpoint_every_epochs or cfg.train.keep_best:
            cbs.append(C.Checkpoint(every_steps=cfg.train.checkpoint_every_steps,
                                    every_epochs=cfg.train.checkpoint_every_epochs,
                                    keep_best=cfg.train.keep_best, monitor=cfg.train.monitor,
                                    mode=cfg.train.mode))
    cbs += build_trackers(cfg, loggers, run_path, tracking)
    trainer = Trainer(
        model, train, val_data=evals.get("val"), loss=criterion, optimizer=optimizer_factory(cfg.optimizer),
        schedule=schedule, callbacks=cbs, epochs=cfg.train.epochs, steps=cfg.train.steps, device=device,
        precision=cfg.train.precision, compile=cfg.train.compile, channels_last=cfg.train.channels_last,
        grad_accum_steps=cfg.train.grad_accum_steps, seed=seed, run_dir=run_path,
        track_train_acc=cfg.train.track_train_acc, progress=cfg.train.progress,
        eval_every_steps=cfg.train.eval_every_steps, metrics=build_metrics(cfg), deterministic=cfg.train.deterministic,
        batch_keys=tuple(cfg.data.batch_keys),
    )
    return Run(cfg, splits, trainer, evals.get("test"), run_path)
