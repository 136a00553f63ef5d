"""Build a ready-to-run Trainer from a RunConfig: data, model, loss, optimizer, schedule, tricks."""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trickbag import catalog
from trickbag._validate import unknown
from trickbag.train.config import RunConfig, TrickSpec
from trickbag.train.distributed import world
from trickbag.train.trainer import Trainer, _resolve_device, seed_everything

__all__ = ["Run", "build_run", "DATASETS", "LOSSES"]


def _check_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any], what: str, skip: tuple[str, ...] = ()) -> None:
    """Unknown keyword arguments and missing required ones become ValueErrors naming them."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if p.kind is not p.VAR_POSITIONAL and n not in skip and n != "self"]
    for key in kwargs:
        if key not in valid:
            raise unknown(f"parameter for {what}", key, valid)
    missing = [n for n in valid if params[n].default is inspect.Parameter.empty and n not in kwargs
               and params[n].kind is not inspect.Parameter.VAR_KEYWORD]
    if missing:
        hint = [f"{m} (or {m[:-6]}_epochs)" if m.endswith("_steps") else m for m in missing]
        raise ValueError(f"{what} needs {', '.join(hint)}")


# ---- data -------------------------------------------------------------------------------------

def _find(path: str | None, cfg: RunConfig, what: str) -> str:
    if not path:
        raise ValueError(f"data.path is required for {what}")
    p = Path(path)
    if not p.exists() and cfg.source and not p.is_absolute():
        alt = Path(cfg.source).parent / p
        if alt.exists():
            return str(alt)
    return str(p)


def _load_fashion_mnist(cfg: RunConfig):
    from trickbag.data import fashion_mnist

    return fashion_mnist(cfg.data.root, **cfg.data.options)


def _load_cifar10(cfg: RunConfig):
    from trickbag.data import cifar10

    return cifar10(cfg.data.root, **cfg.data.options)


def _load_image_folder(cfg: RunConfig):
    from trickbag.data import image_folder

    return image_folder(_find(cfg.data.path, cfg, "image_folder"), **cfg.data.options)


def _load_mr(cfg: RunConfig):
    from trickbag.data import mr_polarity

    return mr_polarity(_find(cfg.data.path, cfg, "mr_polarity"), **cfg.data.options)


def _load_synthetic(cfg: RunConfig):
    from trickbag.data import synthetic

    opts = dict(cfg.data.options)
    if "shape" in opts:
        opts["shape"] = tuple(opts["shape"])
    return synthetic(**opts)


DATASETS: dict[str, Callable[[RunConfig], Any]] = {
    "fashion_mnist": _load_fashion_mnist,
    "cifar10": _load_cifar10,
    "image_folder": _load_image_folder,
    "mr_polarity": _load_mr,
    "synthetic": _load_synthetic,
}


def load_splits(cfg: RunConfig):
    """The data set's splits, with a validation split made from the training data if needed."""
    from trickbag.data import split_off, subset

    if cfg.data.name not in DATASETS:
        raise unknown("data set", cfg.data.name, DATASETS)
    splits = DATASETS[cfg.data.name](cfg)
    if splits.val is None and cfg.data.val_fraction > 0:
        splits.train, splits.val = split_off(splits.train, cfg.data.val_fraction, seed=cfg.data.split_seed)
    if cfg.data.subset:
        splits.train = subset(splits.train, cfg.data.subset, seed=cfg.data.split_seed)
    return splits


# ---- model, loss, optimizer, schedule -------------------------------------------------------------

def build_model(cfg: RunConfig, splits) -> nn.Module:
    from trickbag.init import init_weights
    from trickbag.models import MODELS

    spec = dict(cfg.model)
    name = spec.pop("name")
    init = spec.pop("init", None)
    if ":" in name:
        model = peer_model(name, spec, splits.input_shape, splits.num_classes)
        if init:
            init_weights(model, init)
        return model
    if name not in MODELS:
        raise unknown("model", name, MODELS)
    fn = MODELS[name]
    shape = splits.input_shape
    auto = {"num_classes": splits.num_classes}
    if name == "mlp":
        auto["in_features"] = math.prod(shape)
    elif name == "text_cnn":
        if splits.vocab is None:
            raise ValueError(f"model text_cnn needs a text data set with a vocabulary; data {cfg.data.name!r} has none")
        auto["vocab_size"] = len(splits.vocab)
        if spec.get("pretrained"):
            auto["vocab"] = splits.vocab
    else:
        if len(shape) != 3:
            raise ValueError(f"model {name} needs images (C, H, W); data {cfg.data.name!r} gives shape {shape}")
        auto["in_channels"] = shape[0]
    _check_kwargs(fn, spec, f"model {name}", skip=tuple(auto) + ("vocab",))
    model = fn(**{**auto, **spec})
    if init:
        init_weights(model, init)
    return model


#: Model names with these prefixes come from a peer library: ``torchvision:resnet18``, ``timm:resnet18``.
PEER_MODELS = {"torchvision": "vision", "timm": "timm"}


def peer_model(name: str, spec: dict[str, Any], shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build ``torchvision:ARCH`` or ``timm:ARCH`` with random weights (unless ``spec`` asks for
    pretrained ones) and this data set's number of classes; ``spec`` goes to the library."""
    from trickbag._optional import require

    library, _, arch = name.partition(":")
    if library not in PEER_MODELS:
        raise unknown("model library (the part before ':')", library, PEER_MODELS)
    if len(shape) != 3:
        raise ValueError(f"model {name} needs images (C, H, W); the data gives shape {tuple(shape)}")
    if library == "torchvision":
        models = require("torchvision.models", PEER_MODELS[library], f"model {name}")
        if arch not in models.list_models():
            raise unknown("torchvision model", arch, models.list_models())
        if shape[0] != 3:
            raise ValueError(f"torchvision's {arch} takes 3-channel images but the data has {shape[0]}; "
                             f"use timm:{arch} (it adapts the first layer with in_chans) or a trickbag model")
        return models.get_model(arch, **{"weights": None, "num_classes": num_classes, **spec})
    timm = require("timm", PEER_MODELS[library], f"model {name}")
    if arch not in timm.list_models():
        raise unknown("timm model", arch, timm.list_models())
    return timm.create_model(arch, **{"pretrained": False, "num_classes": num_classes, "in_chans": shape[0], **spec})


LOSSES: dict[str, Callable[..., nn.Module]] = {
    "cross_entropy": nn.CrossEntropyLoss,
    "bce": nn.BCEWithLogitsLoss,
    "mse": nn.MSELoss,
}


def build_loss(cfg: RunConfig) -> nn.Module:
    from trickbag.losses import FocalLoss, SigmoidFocalLoss

    table = {**LOSSES, "focal_loss": FocalLoss, "sigmoid_focal_loss": SigmoidFocalLoss}
    spec = dict(cfg.loss)
    name = spec.pop("name")
    if name not in table:
        raise unknown("loss", name, table)
    _check_kwargs(table[name], spec, f"loss {name}")
    return table[name](**spec)


def _steps(spec: dict[str, Any], steps_per_epoch: int, fn: Callable[..., Any]) -> dict[str, Any]:
    """Turn ``X_epochs`` arguments into ``X_steps`` (or ``X`` when that is the parameter's name,
    as for ``milestones_epochs``), for scalars and lists."""
    params = inspect.signature(fn).parameters
    out = {}
    for key, value in spec.items():
        if not key.endswith("_epochs"):
            out[key] = value
            continue
        base = key[: -len("_epochs")]
        target = base + "_steps" if base + "_steps" in params else base
        convert = lambda v: max(1, round(v * steps_per_epoch))  # noqa: E731
        out[target] = [convert(v) for v in value] if isinstance(value, (list, tuple)) else convert(value)
    return out


def build_schedule(spec: dict[str, Any] | None, steps_per_epoch: int, total_steps: int):
    """A schedule from ``{name, **kwargs}``; ``*_epochs`` become ``*_steps`` and
    ``total_steps`` is filled in from the run length."""
    if not spec:
        return None
    from trickbag import schedules

    spec = dict(spec)
    name = spec.pop("name")
    names = [t.name for t in catalog.by_kind("schedule") if t.use == "schedule"]
    if name not in names:
        raise unknown("schedule", name, names)
    fn = getattr(schedules, name)
    kwargs = _steps(spec, steps_per_epoch, fn)
    if "total_steps" in inspect.signature(fn).parameters and "total_steps" not in kwargs:
        kwargs["total_steps"] = total_steps
    _check_kwargs(fn, kwargs, f"schedule {name}")
    return fn(**kwargs)


def optimizer_factory(spec: dict[str, Any]) -> Callable[[nn.Module], torch.optim.Optimizer]:
    from trickbag.optim import Lookahead, create_optimizer

    spec = dict(spec)
    lookahead = spec.pop("lookahead", None)

    def make(model: nn.Module) -> torch.optim.Optimizer:
        opt = create_optimizer(model, **spec)
        return Lookahead(opt, **lookahead) if lookahead else opt

    return make


# ---- tricks -----------------------------------------------------------------------------------------

@dataclass
class TrickPlan:
    callbacks: list[Any] = field(default_factory=list)
    model: list[tuple[catalog.Trick, dict[str, Any]]] = field(default_factory=list)


def apply_tricks(cfg: RunConfig) -> tuple[RunConfig, TrickPlan]:
    """Resolve ``cfg.tricks`` through the catalog: config edits (optimizer, schedule, loss) go into
    the returned config; callbacks and model surgery into the plan."""
    from trickbag.augment import AUGMENTATIONS
    from trickbag.train.callbacks import Augment

    cfg = cfg.replace()
    plan = TrickPlan()
    schedule_from: str | None = None
    for spec in cfg.tricks:
        entry = catalog.get(spec.name)
        params = {**entry.defaults, **spec.params}
        use = entry.use
        if use is None:
            raise ValueError(
                f"trick {entry.name!r} ({entry.kind}) has no config form: use it from Python "
                f"(`trickbag show {entry.name}`)"
            )
        if use == "optimizer":
            if entry.name == "lookahead":
                _check_kwargs(entry.load_wrapper(), params, "lookahead", skip=("optimizer",))
                cfg.optimizer = {**cfg.optimizer, "lookahead": params}
            else:
                base = cfg.optimizer
                new = {"name": entry.name, "lr": params.pop("lr", base.get("lr")),
                       "weight_decay": base.get("weight_decay", 0.0), **params}
                if "lookahead" in base:
                    new["lookahead"] = base["lookahead"]
                cfg.optimizer = new
        elif use == "schedule":
            if schedule_from is not None:
                raise ValueError(f"tricks {schedule_from!r} and {entry.name!r} are both schedules for one optimizer; keep one")
            schedule_from = entry.name
            cfg.schedule = {"name": entry.name, **params}
        elif use == "loss":
            cfg.loss = {"name": entry.name, **params}
        elif use == "model":
            _check_kwargs(entry.load_apply(), params, f"trick {entry.name}", skip=("model",))
            plan.model.append((entry, params))
        elif use == "augment":
            op = AUGMENTATIONS[entry.name]
            _check_kwargs(op.fn, params, f"trick {entry.name}", skip=("x", "generator"))
            plan.callbacks.append(Augment(op(**params)))
        else:
            cls = entry.load_callback()
            _check_kwargs(cls.__init__, params, f"trick {entry.name}")
            plan.callbacks.append(cls(**params))
    return cfg, plan


def check_names(cfg: RunConfig) -> None:
    """Fail fast, before any data is loaded, on unknown data set, model, loss, optimizer,
    schedule or loader names."""
    from trickbag.models import MODELS
    from trickbag.optim import list_optimizers

    checks = [
        ("data set", cfg.data.name, DATASETS),
        ("data.loader", cfg.data.loader, ("device", "torch")),
        ("model", cfg.model["name"], [*MODELS, *(f"{lib}:ARCH" for lib in PEER_MODELS)]),
        ("loss", cfg.loss["name"], [*LOSSES, "focal_loss", "sigmoid_focal_loss"]),
        ("optimizer", cfg.optimizer["name"], list_optimizers()),
    ]
    if cfg.schedule:
        checks.append(("schedule", cfg.schedule["name"], [t.name for t in catalog.TRICKS if t.use == "schedule"]))
    for what, name, valid in checks:
        if what == "model" and name.partition(":")[0] in PEER_MODELS and name.partition(":")[2]:
            continue  # the library checks the architecture when the model is built
        if name not in valid:
            raise unknown(what, name, valid)


# ---- the run -----------------------------------------------------------------------------------------

@dataclass
class Run:
    """A configured run: ``fit()`` trains, evaluates the test split once, and writes results."""

    config: RunConfig
    splits: Any
    trainer: Trainer
    test_data: Any
    run_dir: Path | None

    def fit(self) -> dict[str, Any]:
        start = time.perf_counter()
        history = self.trainer.fit()
        wall = time.perf_counter() - start
        state = self.trainer.state
        results: dict[str, Any] = {"history": history, "wall_time": wall, "stopped": state.stop_reason or None}
        final = dict(state.metrics)
        results["final"] = final
        if self.test_data is not None and not state.diverged:
            results["test"] = self.trainer.evaluate(self.test_data, prefix="test")
            for cb in self.trainer.callbacks:  # metrics a callback computes (test_robust_acc ...)
                if hasattr(cb, "test_metrics"):
                    results["test"].update(cb.test_metrics(state, self.test_data))
        if self.run_dir is not None and state.is_main:
            torch.save(state.raw_model.state_dict(), self.run_dir / "model.pt")
            (self.run_dir / "results.json").write_text(json.dumps(_plain(results), indent=1))
        return results


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def build_run(cfg: RunConfig, *, run_dir: str | Path | None = None, splits=None, callbacks=()) -> Run:
    """Everything a config describes, ready to ``fit()``. Unknown names and parameters fail
    here, before any training. ``splits`` reuses already loaded data."""
    from trickbag.augment import build_augment, fit_normalizer
    from trickbag.data import DeviceLoader, TorchLoader
    from trickbag.train import callbacks as C

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    cfg, plan = apply_tricks(cfg)
    check_names(cfg)
    seed = cfg.train.seed
    rank, _, size = world()
    splits = splits if splits is not None else load_splits(cfg)
    device = _resolve_device(cfg.train.device)
    image = splits.train.kind == "image"
    normalizer = fit_normalizer(splits.train.inputs) if image and not splits.train.inputs.is_floating_point() else None
    augment = build_augment(cfg.data.augment) if cfg.data.augment else None
    if augment is not None and not image:
        raise ValueError(f"data.augment needs image data; {cfg.data.name!r} gives {splits.train.kind} inputs")
    loader_cls = {"device": DeviceLoader, "torch": TorchLoader}.get(cfg.data.loader)
    if loader_cls is None:
        raise unknown("data.loader", cfg.data.loader, ("device", "torch"))
    extra = {"num_workers": cfg.data.num_workers} if loader_cls is TorchLoader else {}
    common = dict(device=device, normalize=normalizer, rank=rank, world_size=size, channels_last=cfg.train.channels_last, **extra)
    train = loader_cls(splits.train, cfg.data.batch_size, shuffle=True, augment=augment, seed=seed, **common)
    evals = {k: loader_cls(getattr(splits, k), cfg.data.eval_batch_size, shuffle=False, drop_last=False, **common)
             for k in ("val", "test") if getattr(splits, k) is not None}

    seed_everything(seed)  # initial weights depend on the seed alone (paired across ablation arms)
    model = build_model(cfg, splits)
    for entry, params in plan.model:
        out = entry.load_apply()(model, **params)
        model = out if isinstance(out, nn.Module) else model  # some return a count, not the model
    criterion = build_loss(cfg)
    spe = len(train) // cfg.train.grad_accum_steps
    total = cfg.train.steps if cfg.train.epochs is None else cfg.train.epochs * spe
    if cfg.train.steps is not None:
        total = min(total, cfg.train.steps)
    schedule = build_schedule(cfg.schedule, spe, total)
    run_path = Path(run_dir) if run_dir is not None else None
    cbs = list(plan.callbacks) + list(callbacks)
    if cfg.train.nan_guard:
        cbs.insert(0, C.NaNGuard())
    if run_path is not None:
        cbs.append(C.MetricsLogger(every_steps=cfg.train.log_every))
        if cfg.train.checkpoint_every_steps or cfg.train.checkpoint_every_epochs or cfg.train.keep_best:
            cbs.append(C.Checkpoint(every_steps=cfg.train.checkpoint_every_steps,
                                    every_epochs=cfg.train.checkpoint_every_epochs,
                                    keep_best=cfg.train.keep_best, monitor=cfg.train.monitor,
                                    mode=cfg.train.mode))
    trainer = Trainer(
        model, train, val_data=evals.get("val"), loss=criterion, optimizer=optimizer_factory(cfg.optimizer),
        schedule=schedule, callbacks=cbs, epochs=cfg.train.epochs, steps=cfg.train.steps, device=device,
        precision=cfg.train.precision, compile=cfg.train.compile, channels_last=cfg.train.channels_last,
        grad_accum_steps=cfg.train.grad_accum_steps, seed=seed, run_dir=run_path,
        track_train_acc=cfg.train.track_train_acc, progress=cfg.train.progress,
        eval_every_steps=cfg.train.eval_every_steps,
    )
    return Run(cfg, splits, trainer, evals.get("test"), run_path)
