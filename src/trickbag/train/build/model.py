"""The model, loss, metrics, schedule and optimizer a config names: built-in names, peer
libraries (``torchvision:ARCH``, ``timm:ARCH``) and your own ``package.module:callable``."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from trickbag import catalog
from trickbag._validate import unknown
from trickbag.train._imports import call_with, import_object, is_import_path
from trickbag.train.build._kwargs import _check_kwargs
from trickbag.train.config import RunConfig

__all__ = ["build_model", "peer_model", "PEER_MODELS", "LOSSES", "build_loss", "build_metrics", "build_schedule",
           "check_optimizer", "optimizer_factory"]


def build_model(cfg: RunConfig, splits) -> nn.Module:
    from trickbag.init import init_weights
    from trickbag.models import MODELS

    spec = dict(cfg.model)
    name = spec.pop("name")
    init = spec.pop("init", None)
    if is_import_path(name):  # your own: package.module:callable(input_shape=..., num_classes=..., **kwargs)
        fn = import_object(name, "model", libraries=tuple(PEER_MODELS))
        offered = {"input_shape": splits.input_shape, "num_classes": splits.num_classes,
                   "vocab_size": len(splits.vocab) if splits.vocab else None}
        model = call_with(fn, offered, spec, f"model {name}")
        if not isinstance(model, nn.Module):
            raise ValueError(f"model {name!r} returned {type(model).__name__}, not a torch.nn.Module")
        if init:
            init_weights(model, init)
        return model
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
    if is_import_path(name):  # your own: a loss class or a function returning one
        loss = call_with(import_object(name, "loss"), {}, spec, f"loss {name}")
        if not callable(loss):
            raise ValueError(f"loss {name!r} built a {type(loss).__name__}, not a callable loss(outputs, targets)")
        return loss
    if name not in table:
        raise unknown("loss", name, [*table, "package.module:callable"])
    _check_kwargs(table[name], spec, f"loss {name}")
    return table[name](**spec)


def build_metrics(cfg: RunConfig) -> dict[str, Callable[..., Any]]:
    """``metrics: {name: "package.module:fn"}`` or ``{name: {name: "package.module:fn", **kwargs}}``:
    extra evaluation metrics ``fn(outputs, targets, **kwargs) -> batch mean``, reported as
    ``val_<name>`` and ``test_<name>``."""
    import functools

    out = {}
    for key, spec in (cfg.metrics or {}).items():
        spec = {"name": spec} if isinstance(spec, str) else dict(spec)
        path = spec.pop("name", None)
        if not is_import_path(path):
            raise ValueError(f"metrics.{key} must be 'package.module:function' (or {{name: ..., **kwargs}}), got {path!r}")
        fn = import_object(path, f"metric {key}")
        out[key] = functools.partial(fn, **spec) if spec else fn
    return out


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


def check_optimizer(spec: dict[str, Any], model: nn.Module) -> None:
    """Build the optimizer once on ``model`` (on the CPU, then thrown away) so that a bad
    value (``optimizer.lr=fast``, ``optimizer.momentum=-1``) fails before anything is written
    or trained, naming the key."""
    from trickbag.optim import create_optimizer
    from trickbag.optim.factory import _OPTIMIZERS

    spec = dict(spec)
    name = spec.get("name")
    cls = _OPTIMIZERS.get(str(name).lower())
    if cls is not None:
        params = inspect.signature(cls.__init__).parameters
        for key, value in spec.items():
            default = params[key].default if key in params else None
            if key in ("lr", "weight_decay") or (isinstance(default, (int, float)) and not isinstance(default, bool)):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"optimizer.{key} must be a number, got {value!r}")
            elif isinstance(default, bool) and not isinstance(value, bool) and key != "fused":
                raise ValueError(f"optimizer.{key} must be true or false, got {value!r}")
            elif isinstance(default, tuple) and not (isinstance(value, (list, tuple)) and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
                raise ValueError(f"optimizer.{key} must be a list of {len(default)} numbers, got {value!r}")
    spec.pop("fused", None)  # fused kernels need CUDA parameters: checked when the run starts
    spec.pop("name", None)
    lookahead = spec.pop("lookahead", None)
    try:
        opt = create_optimizer(model, name, **spec)
        if lookahead:
            from trickbag.optim import Lookahead

            if not isinstance(lookahead, dict):
                raise ValueError(f"optimizer.lookahead must be a mapping of Lookahead's arguments, got {lookahead!r}")
            _check_kwargs(Lookahead, lookahead, "optimizer.lookahead", skip=("optimizer",))
            Lookahead(opt, **lookahead)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"optimizer {name}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"optimizer {name}: {exc}") from None


def optimizer_factory(spec: dict[str, Any]) -> Callable[[nn.Module], torch.optim.Optimizer]:
    from trickbag.optim import Lookahead, create_optimizer

    spec = dict(spec)
    lookahead = spec.pop("lookahead", None)

    def make(model: nn.Module) -> torch.optim.Optimizer:
        opt = create_optimizer(model, **spec)
        return Lookahead(opt, **lookahead) if lookahead else opt

    return make

