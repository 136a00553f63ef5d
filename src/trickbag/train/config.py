"""Run configurations: typed sections, YAML files with ``key=value`` overrides, strict keys."""

from __future__ import annotations

import copy
import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trickbag._validate import _is_real, check_choice, unknown

__all__ = ["DataConfig", "TrainConfig", "RunConfig", "TrickSpec", "load_config", "parse_trick", "apply_overrides",
           "yaml_load"]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading floats as YAML 1.2 does: ``1e-3`` is a number, not the
    string YAML 1.1 makes of it (a learning rate written that way would fail far from here)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    __import__("re").compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                             |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                             |\.[0-9_]+(?:[eE][-+][0-9]+)?
                             |[-+]?\.(?:inf|Inf|INF)
                             |\.(?:nan|NaN|NAN))$""", __import__("re").X),
    list("-+0123456789."),
)


class _BadYAML(yaml.YAMLError, ValueError):
    """Invalid YAML, as a ``ValueError`` too: the command line's one-line errors catch it."""


def yaml_load(text: str) -> Any:
    """Parse YAML safely, with YAML 1.2 floats. Invalid YAML raises a ``ValueError`` (that is
    also a ``yaml.YAMLError``) saying where and why in one sentence."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except _BadYAML:
        raise
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        shown = f"{text!r} is" if len(text) <= 40 and "\n" not in text else "the text is"
        raise _BadYAML(f"{shown} not valid YAML: {problem}{where}") from None


@dataclass
class DataConfig:
    """``data:`` the data set and how batches are drawn."""

    name: str = "fashion_mnist"
    root: str | None = None  # fashion_mnist, cifar10: where to look first
    path: str | None = None  # image_folder, mr_polarity: the folder or archive
    options: dict[str, Any] = field(default_factory=dict)  # data-set specific (synthetic sizes, max_len ...)
    batch_size: int = 128
    eval_batch_size: int = 512
    val_fraction: float = 0.1  # split off the training data (fixed split_seed) when there is no val split
    split_seed: int = 0
    subset: int | None = None  # use this many training examples (after the validation split)
    eval_subset: int | None = None  # evaluate on this many validation and test examples (quick runs)
    long_tail: dict[str, Any] | None = None  # {imbalance_ratio: 100, profile: exponential}: long-tailed training split
    label_noise: Any = None  # symmetric noise in the training labels: a rate (seeded by split_seed) or {rate: 0.2, seed: 0}
    exclude: str | None = None  # a file of training-split positions to leave out (`trickbag clean` writes one)
    augment: list[Any] = field(default_factory=list)  # applied by the loader to training batches
    loader: str = "device"  # "device" (whole data set on the device) or "torch" (DataLoader)
    num_workers: int = 0
    batch_keys: list[str] = field(default_factory=lambda: ["input", "label"])  # inputs, targets of dict batches


@dataclass
class TrainConfig:
    """``train:`` how long and how to train."""

    epochs: int | None = 10
    steps: int | None = None
    precision: str = "fp32"
    device: str = "auto"
    compile: bool = False
    channels_last: bool = False
    grad_accum_steps: int = 1
    seed: int = 0
    threads: int | None = None
    log_every: int = 50
    checkpoint_every_steps: int | None = None
    checkpoint_every_epochs: int | None = 1
    keep_best: int = 0
    monitor: str = "val_acc"
    mode: str | None = None  # is a higher or lower `monitor` better: "max" or "min"; None infers it from the name
    nan_guard: bool = True
    progress: bool = True
    track_train_acc: bool = False
    eval_every_steps: int | None = None
    loggers: list[Any] = field(default_factory=list)  # [tensorboard, mlflow, wandb] or {mlflow: {tracking_uri: ...}}
    deterministic: bool = False  # bitwise-repeatable on GPUs too (slower): deterministic kernels only


@dataclass(frozen=True)
class TrickSpec:
    """A trick named in ``tricks:``, with its parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.params.items())

    def to_yaml(self) -> Any:
        return {self.name: dict(self.params)} if self.params else self.name


@dataclass
class RunConfig:
    """A whole run. ``model``, ``loss``, ``optimizer`` and ``schedule`` are ``{name: ..., **kwargs}``
    dicts whose keys are checked against the chosen builder when the run is built."""

    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"name": "small_cnn"})
    loss: dict[str, Any] = field(default_factory=lambda: {"name": "cross_entropy"})
    optimizer: dict[str, Any] = field(default_factory=lambda: {
        "name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4})
    schedule: dict[str, Any] | None = None
    tricks: list[TrickSpec] = field(default_factory=list)
    train: TrainConfig = field(default_factory=TrainConfig)
    ablation: dict[str, Any] | None = None  # read by `trickbag ablate`
    search: dict[str, Any] | None = None  # read by `trickbag search`
    metrics: dict[str, Any] | None = None  # extra evaluation metrics: {name: "package.module:fn"}
    plugins: list[str] = field(default_factory=list)  # modules imported first (they register tricks)
    source: str | None = None  # the file it came from (for relative data paths)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "data": dataclasses.asdict(self.data),
            "model": dict(self.model),
            "loss": dict(self.loss),
            "optimizer": dict(self.optimizer),
            "schedule": dict(self.schedule) if self.schedule else None,
            "tricks": [t.to_yaml() for t in self.tricks],
            "train": dataclasses.asdict(self.train),
        }
        if self.metrics:
            out["metrics"] = copy.deepcopy(self.metrics)
        if self.plugins:
            out["plugins"] = list(self.plugins)
        if self.ablation is not None:
            out["ablation"] = copy.deepcopy(self.ablation)
        if self.search is not None:
            out["search"] = copy.deepcopy(self.search)
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def validate(self) -> RunConfig:
        """Check the type and range of every ``data:`` and ``train:`` value; a bad one raises
        ``ValueError`` naming the key, the value and what is valid. Returns ``self``."""
        _check_values(self.data, _DATA_RULES, "data")
        _check_values(self.train, _TRAIN_RULES, "train")
        if self.train.epochs is None and self.train.steps is None:
            raise ValueError("give train.epochs or train.steps (how long to train); both are null")
        return self

    def replace(self, **changes: Any) -> RunConfig:
        new = copy.deepcopy(self)
        for k, v in changes.items():
            setattr(new, k, v)
        return new


_SECTIONS = {f.name for f in dataclasses.fields(RunConfig)} - {"source"}


def _int(minimum: int, optional: bool = False):
    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            return f"an integer >= {minimum}" + (" or null" if optional else "")
        return None
    return check


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _str(optional: bool = False):
    def check(value: Any) -> str | None:
        if (value is None and optional) or isinstance(value, str):
            return None
        return "a string" + (" or null" if optional else "")
    return check


def _fraction(value: Any) -> str | None:
    return None if _is_real(value) and 0 <= value < 1 else "a number in [0, 1)"


def _of(kind: type, what: str):
    return lambda value: None if isinstance(value, kind) else what


def _device(value: Any) -> str | None:
    if not isinstance(value, str):
        return "'auto', 'cpu', 'cuda' or 'cuda:N'"
    if value == "auto":
        return None
    import torch

    try:
        torch.device(value)
    except (RuntimeError, ValueError):
        return "'auto', 'cpu', 'cuda' or 'cuda:N'"
    return None


_DATA_RULES = {
    "name": _str(), "root": _str(True), "path": _str(True), "options": _of(dict, "a mapping"),
    "batch_size": _int(1), "eval_batch_size": _int(1), "val_fraction": _fraction, "split_seed": _int(0),
    "subset": _int(1, True), "eval_subset": _int(1, True), "augment": _of(list, "a list"), "loader": _str(), "num_workers": _int(0),
    "batch_keys": lambda v: None if isinstance(v, list) and len(v) == 2 and all(isinstance(k, str) for k in v)
    else "two keys [inputs, targets], e.g. [pixel_values, label]",
}
_TRAIN_RULES = {
    "epochs": _int(1, True), "steps": _int(1, True), "precision": _str(), "device": _device, "compile": _bool,
    "channels_last": _bool, "grad_accum_steps": _int(1), "seed": _int(0), "threads": _int(1, True),
    "log_every": _int(1), "checkpoint_every_steps": _int(1, True), "checkpoint_every_epochs": _int(1, True),
    "keep_best": _int(0), "monitor": _str(), "nan_guard": _bool, "progress": _bool, "track_train_acc": _bool,
    "eval_every_steps": _int(1, True), "mode": _str(True), "loggers": _of(list, "a list such as [mlflow]"), "deterministic": _bool,
}


def _check_values(section: Any, rules: dict[str, Any], where: str) -> None:
    for name, rule in rules.items():
        value = getattr(section, name)
        valid = rule(value)
        if valid is not None:
            raise ValueError(f"{where}.{name} must be {valid}, got {value!r}")
    if where == "data":
        check_choice("data.loader", section.loader, ("device", "torch"))
    if where == "train":
        check_choice("train.precision", section.precision, ("fp32", "bf16", "fp16"))
        if section.mode is not None:
            check_choice("train.mode", section.mode, ("min", "max"))


def _section(cls, values: Any, where: str):
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise ValueError(f"config section {where!r} must be a mapping, got {values!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            raise unknown(f"key in {where}", key, names)
    return cls(**values)


def parse_trick(spec: Any) -> TrickSpec:
    """``"mixup"``, ``"mixup:alpha=0.2,prob=0.5"`` or ``{"mixup": {"alpha": 0.2}}``.

    Example:
        >>> parse_trick("mixup:alpha=0.2")
        TrickSpec(name='mixup', params={'alpha': 0.2})
    """
    if isinstance(spec, TrickSpec):
        return spec
    if isinstance(spec, str):
        name, _, rest = spec.strip().partition(":")
        params: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"trick parameter {item!r} in {spec!r} is not key=value")
            params[key.strip()] = yaml_load(value)
        return TrickSpec(name.strip(), params)
    if isinstance(spec, dict) and len(spec) == 1:
        name, params = next(iter(spec.items()))
        if params is not None and not isinstance(params, dict):
            raise ValueError(f"parameters of trick {name!r} must be a mapping, got {params!r}")
        return TrickSpec(str(name), dict(params or {}))
    raise ValueError(f"a trick is a name, 'name:key=value,...' or {{name: {{params}}}}, got {spec!r}")


def _named(values: Any, where: str, default: dict[str, Any] | None) -> dict[str, Any] | None:
    """A named section. Without a ``name`` it extends the default (``model: {width: 8}``: the
    default model, narrower); with one, only its own keys count."""
    if values is None:
        return default
    if isinstance(values, str):
        return {"name": values}
    if not isinstance(values, dict):
        raise ValueError(f"config section {where!r} must be a mapping or a name, got {values!r}")
    if "name" not in values:
        if default is None:
            raise ValueError(f"config section {where!r} needs a 'name' (got {values!r})")
        return {**default, **values}
    return dict(values)


def from_dict(raw: dict[str, Any], source: str | None = None) -> RunConfig:
    if not isinstance(raw, dict):
        raise ValueError(f"a config is a mapping of sections ({', '.join(sorted(_SECTIONS))}), got {type(raw).__name__}")
    for key in raw:
        if key not in _SECTIONS:
            raise unknown("config section", key, _SECTIONS)
    defaults = RunConfig()
    plugins = raw.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ValueError(f"plugins must be a list of module names (e.g. [mypkg.tricks]), got {plugins!r}")
    for module in plugins:  # before the tricks are read: plugins register tricks
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"plugins: cannot import {module!r} ({exc}); is its package installed, or its folder "
                             "on PYTHONPATH?") from None
    metrics = raw.get("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        raise ValueError(f"metrics must be a mapping {{name: 'package.module:function'}}, got {metrics!r}")
    tricks = raw.get("tricks") or []
    if not isinstance(tricks, list):
        raise ValueError(f"tricks must be a list, got {tricks!r}")
    cfg = RunConfig(
        data=_section(DataConfig, raw.get("data"), "data"),
        model=_named(raw.get("model"), "model", defaults.model),
        loss=_named(raw.get("loss"), "loss", defaults.loss),
        optimizer=_named(raw.get("optimizer"), "optimizer", defaults.optimizer),
        schedule=_named(raw.get("schedule"), "schedule", None),
        tricks=[parse_trick(t) for t in tricks],
        train=_section(TrainConfig, raw.get("train"), "train"),
        ablation=raw.get("ablation"),
        search=raw.get("search"),
        metrics=dict(metrics) if metrics else None,
        plugins=list(plugins),
        source=source,
    )
    return cfg.validate()


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to a raw config dict."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"override {item!r} is not key=value (e.g. train.epochs=3)")
        parts = key.strip().split(".")
        if parts[0] not in _SECTIONS:
            raise unknown("config section", parts[0], _SECTIONS)
        node = raw
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {p!r} is not a section")
        try:
            node[parts[-1]] = yaml_load(value)
        except ValueError as exc:
            raise ValueError(f"override {item!r}: {exc}") from None
    return raw


def load_config(source: str | Path | dict[str, Any] | RunConfig, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML config (or a dict) and apply ``key=value`` overrides; unknown sections and keys
    fail here, naming the closest valid one."""
    if isinstance(source, RunConfig):
        raw, origin = source.to_dict(), source.source
    elif isinstance(source, dict):
        raw, origin = source, None
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            raw = yaml_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: {exc}") from None
        origin = str(path)
    return from_dict(apply_overrides(raw, list(overrides)), origin)

