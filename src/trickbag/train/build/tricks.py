"""Resolve a config's ``tricks`` through the catalog: config edits (optimizer, schedule, loss)
go into the config; callbacks, model surgery and loader augmentations into a :class:`TrickPlan`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trickbag import catalog
from trickbag.train.build._kwargs import _check_kwargs
from trickbag.train.config import RunConfig, TrickSpec

__all__ = ["TrickPlan", "apply_tricks"]


@dataclass
class TrickPlan:
    callbacks: list[Any] = field(default_factory=list)
    model: list[tuple[catalog.Trick, dict[str, Any]]] = field(default_factory=list)
    loader_augment: list[Any] = field(default_factory=list)  # augmentations that need example indices


def apply_tricks(cfg: RunConfig) -> tuple[RunConfig, TrickPlan]:
    """Resolve ``cfg.tricks`` through the catalog: config edits (optimizer, schedule, loss) go into
    the returned config; callbacks and model surgery into the plan."""
    from trickbag.augment import AUGMENTATIONS
    from trickbag.train.callbacks import Augment

    cfg = cfg.replace()
    plan = TrickPlan()
    schedule_from: str | None = None
    mixers = {spec.name: spec for spec in cfg.tricks if spec.name in ("mixup", "cutmix")}
    if len(mixers) == 2:  # both: one batch mixed by one of them, timm's Mixup(..., switch_prob) semantics
        plan.callbacks.append(_mixup_cutmix(mixers["mixup"], mixers["cutmix"]))
    for spec in cfg.tricks:
        if len(mixers) == 2 and spec.name in mixers:
            continue
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
            op = AUGMENTATIONS[entry.name] if entry.name in AUGMENTATIONS else entry.load_wrapper()
            _check_kwargs(getattr(op, "fn", op.__init__), params, f"trick {entry.name}",
                          skip=("x", "generator", "indices", "epoch"))
            if getattr(op, "uses_indices", False):  # runs in the training loader, which knows indices
                plan.loader_augment.append(op(**params))
            else:
                plan.callbacks.append(Augment(op(**params)))
        else:
            cls = entry.load_callback()
            _check_kwargs(cls.__init__, params, f"trick {entry.name}")
            plan.callbacks.append(cls(**params))
    return cfg, plan


def _mixup_cutmix(mixup: TrickSpec, cutmix: TrickSpec):
    """``tricks: [mixup, cutmix]`` as one MixupCutMix: their alphas, a shared ``prob`` and cutmix's
    ``switch_prob`` (default 0.5)."""
    from trickbag.train.callbacks import MixupCutMix

    m = {**catalog.get("mixup").defaults, **mixup.params}
    c = {**catalog.get("cutmix").defaults, **cutmix.params}
    switch = c.pop("switch_prob", 0.5)
    for key in ("prob", "soft_targets", "num_classes"):
        if key in m and key in c and m[key] != c[key]:
            raise ValueError(f"mixup and cutmix together are one mixer: give {key} once (mixup has {m[key]!r}, "
                             f"cutmix {c[key]!r})")
    shared = {k: v for k, v in {**c, **m}.items() if k in ("prob", "soft_targets", "num_classes")}
    _check_kwargs(MixupCutMix.__init__, {**{f"mixup_{k}": v for k, v in m.items() if k not in shared},
                                         **{f"cutmix_{k}": v for k, v in c.items() if k not in shared}}, "mixup + cutmix")
    return MixupCutMix(mixup_alpha=m["alpha"], cutmix_alpha=c["alpha"], switch_prob=switch, **shared)
