"""Search spaces: ``key: distribution`` pairs mapped onto run-config paths."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trickbag import catalog
from trickbag._validate import unknown
from trickbag.train.config import DataConfig, RunConfig, TrainConfig, load_config

__all__ = ["Param", "parse_space", "load_space", "apply_params", "SHORTCUTS", "is_scale_parameter"]

#: Short keys and the config paths they stand for.
SHORTCUTS = {
    "lr": "optimizer.lr",
    "weight_decay": "optimizer.weight_decay",
    "momentum": "optimizer.momentum",
    "optimizer": "optimizer.name",
    "batch_size": "data.batch_size",
    "epochs": "train.epochs",
    "dropout": "model.dropout",
    "width": "model.width",
    "schedule": "schedule.name",
}
_NAMED = ("model", "optimizer", "loss", "schedule")
_DISTS = {"loguniform", "uniform", "int", "logint", "choice"}


def is_scale_parameter(key: str) -> bool:
    """Learning rates, weight decays, epsilons and such: searched on a log scale by default."""
    last = key.split(".")[-1]
    return bool(re.search(r"(^|_)(lr|learning_rate|weight_decay|eps|decay_rate)$", last)) or last == "lr"


@dataclass(frozen=True)
class Param:
    """One searched parameter: its key, config path and distribution."""

    key: str
    path: str
    kind: str  # "float", "int" or "choice"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(float(self.low), float(self.high), log=self.log)

    def position(self, value: float) -> float:
        """Where ``value`` lies in the range, 0 to 1 (on the log scale for log parameters)."""
        lo, hi, v = float(self.low), float(self.high), float(value)
        if self.log:
            lo, hi, v = math.log(lo), math.log(hi), math.log(v)
        return (v - lo) / (hi - lo) if hi > lo else 0.5

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choice({', '.join(map(str, self.choices))})"
        name = ("log" if self.log else "") + ("int" if self.kind == "int" else "uniform")
        return f"{name}({self.low:g}, {self.high:g})"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["choices"] = list(self.choices)
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Param:
        return Param(**{**d, "choices": tuple(d.get("choices", ()))})


def _parse_value(text: str) -> Any:
    """A number if it reads as one (YAML 1.1 takes ``1e-5`` for a string), else YAML."""
    text = text.strip()
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def _distribution(key: str, spec: Any) -> tuple[str, float | None, float | None, bool, tuple]:
    if isinstance(spec, (list, tuple)) and len(spec) == 2 and all(isinstance(v, (int, float)) for v in spec):
        lo, hi = spec
        log = is_scale_parameter(key)
        kind = "int" if all(isinstance(v, int) and not isinstance(v, bool) for v in spec) and not log else "float"
        return kind, lo, hi, log, ()
    if isinstance(spec, (list, tuple)):
        return "choice", None, None, False, tuple(spec)
    if not isinstance(spec, str):
        raise ValueError(f"{key}: a distribution is 'loguniform(a, b)', 'uniform(a, b)', 'int(a, b)', "
                         f"'choice(x, y)' or a [low, high] list, got {spec!r}")
    m = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", spec)
    if not m:
        raise ValueError(f"{key}: cannot read {spec!r} (expected e.g. loguniform(1e-5, 1) or choice(sgd, adamw))")
    name, args = m.group(1), [_parse_value(a) for a in m.group(2).split(",") if a.strip()]
    if name not in _DISTS:
        raise unknown(f"distribution for {key}", name, _DISTS)
    if name == "choice":
        if not args:
            raise ValueError(f"{key}: choice() needs at least one value")
        return "choice", None, None, False, tuple(args)
    if len(args) != 2 or not all(isinstance(a, (int, float)) for a in args):
        raise ValueError(f"{key}: {name}() takes two numbers (low, high), got {m.group(2)!r}")
    lo, hi = args
    if not lo < hi:
        raise ValueError(f"{key}: the low end must be below the high end, got {lo!r} and {hi!r}")
    log = name in ("loguniform", "logint")
    if log and lo <= 0:
        raise ValueError(f"{key}: a log-scale range must be positive, got low={lo!r}")
    return ("int" if name in ("int", "logint") else "float"), lo, hi, log, ()


def _valid_keys(base: RunConfig) -> list[str]:
    keys = list(SHORTCUTS)
    keys += [f"data.{f.name}" for f in dataclasses.fields(DataConfig)]
    keys += [f"train.{f.name}" for f in dataclasses.fields(TrainConfig)]
    for section in _NAMED:
        values = getattr(base, section) or {}
        keys += [f"{section}.{k}" for k in values]
    keys += [f"{t.name}.<param>" for t in catalog.all_tricks() if t.use == "callback" or t.use == "augment"]
    return keys


def _path(key: str, base: RunConfig) -> str:
    if key in SHORTCUTS:
        return SHORTCUTS[key]
    head, _, rest = key.partition(".")
    if not rest:
        raise unknown("search key", key, _valid_keys(base))
    if head in ("data", "train"):
        fields = {f.name for f in dataclasses.fields(DataConfig if head == "data" else TrainConfig)}
        if rest not in fields:
            raise unknown("search key", key, [f"{head}.{f}" for f in fields])
        return key
    if head in _NAMED:
        return key  # checked when a configuration is built (it depends on the chosen name)
    try:
        entry = catalog.get(head)
    except ValueError:
        raise unknown("search key", key, _valid_keys(base)) from None
    if entry.use not in ("callback", "augment", "schedule", "loss", "optimizer", "model"):
        raise ValueError(f"search key {key!r}: trick {head!r} has no config form")
    return f"tricks.{head}.{rest}"


def parse_space(space: dict[str, Any], base: RunConfig) -> list[Param]:
    """Read ``{key: distribution}``; unknown keys fail here, naming the closest valid key.

    Example:
        >>> from trickbag.train.config import load_config
        >>> ps = parse_space({"lr": "loguniform(1e-5, 1)", "optimizer": "choice(sgd, adamw)"}, load_config({}))
        >>> [(p.path, p.log) for p in ps]
        [('optimizer.lr', True), ('optimizer.name', False)]
    """
    if not isinstance(space, dict) or not space:
        raise ValueError("a search space is a non-empty mapping of key: distribution")
    params = []
    for key, spec in space.items():
        path = _path(str(key), base)
        kind, lo, hi, log, choices = _distribution(str(key), spec)
        params.append(Param(str(key), path, kind, lo, hi, log, choices))
    return params


def load_space(source: str | Path | dict[str, Any], base: RunConfig) -> tuple[list[Param], list[str]]:
    """Parse a space file or dict; returns the parameters and advice (a scale parameter
    searched on a linear scale)."""
    if not isinstance(source, dict):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"search space file not found: {path}")
        try:
            source = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
            raise ValueError(f"search space {path} is not valid YAML{at}: {getattr(exc, 'problem', None) or exc}; "
                             "write one 'key: distribution' per line, e.g. lr: loguniform(1e-4, 1)") from None
    if not isinstance(source, dict):
        raise ValueError(f"a search space is a mapping of 'key: distribution' lines (e.g. lr: loguniform(1e-4, 1)), "
                         f"got {type(source).__name__}")
    params = parse_space(source, base)
    advice = [f"{p.key} is a scale parameter searched on a linear scale; loguniform({p.low:g}, {p.high:g}) "
              "spends the trials evenly over its orders of magnitude" for p in params
              if p.kind == "float" and not p.log and is_scale_parameter(p.key) and p.low and p.low > 0]
    return params, advice


def apply_params(base: RunConfig, values: dict[str, Any], params: list[Param]) -> RunConfig:
    """The base config with the sampled values written into their paths."""
    raw = base.to_dict()
    tricks = [dict(t) if isinstance(t, dict) else {t: {}} for t in raw.get("tricks", [])]
    for p in params:
        if p.key not in values:
            continue
        value = values[p.key]
        head, _, rest = p.path.partition(".")
        if head == "tricks":
            name, _, param = rest.partition(".")
            for t in tricks:
                if name in t:
                    t[name] = {**(t[name] or {}), param: value}
                    break
            else:
                tricks.append({name: {param: value}})
        elif head == "schedule" and raw.get("schedule") is None:
            raw["schedule"] = {rest: value} if rest != "name" else {"name": value}
        else:
            section = raw.setdefault(head, {}) or {}
            raw[head] = section
            if head == "optimizer" and rest == "name" and value != section.get("name"):
                # a different optimizer: keep what every optimizer takes, drop the rest
                section = {k: v for k, v in section.items() if k in ("lr", "weight_decay")}
                raw[head] = section
            section[rest] = value
    raw["tricks"] = [{k: v} if v else k for t in tricks for k, v in t.items()]
    cfg = load_config(raw)
    cfg.source = base.source
    return cfg


