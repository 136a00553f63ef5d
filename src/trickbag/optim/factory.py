"""``create_optimizer``: one call to a torch optimizer, with no-decay groups and fused kernels."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from trickbag._validate import check_nonnegative, check_positive, unknown

__all__ = ["CATEGORIES", "create_optimizer", "list_optimizers", "param_groups"]

_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "radam": torch.optim.RAdam,
    "nadam": torch.optim.NAdam,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
}


def list_optimizers() -> list[str]:
    """Names accepted by :func:`create_optimizer`.

    Example:
        >>> list_optimizers()
        ['adagrad', 'adam', 'adamw', 'muon', 'nadam', 'radam', 'rmsprop', 'sgd']
    """
    return sorted([*_OPTIMIZERS, "muon"])


#: Parameter categories that ``group_scales`` can address.
CATEGORIES = ("weight", "bias", "norm_weight", "norm_bias")
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _categories(model: nn.Module) -> dict[int, str]:
    """Parameter id -> category: a normalisation layer's scale or shift, another bias, or a weight."""
    out: dict[int, str] = {}
    for module in model.modules():
        norm = isinstance(module, _NORMS)
        for name, p in module.named_parameters(recurse=False):
            if id(p) in out:
                continue
            if norm:
                out[id(p)] = "norm_bias" if name == "bias" else "norm_weight"
            else:
                out[id(p)] = "bias" if name == "bias" or name.endswith("_bias") else "weight"
    return out


def param_groups(
    model_or_params: nn.Module | Iterable[Any],
    weight_decay: float,
    *,
    decay_norm_and_bias: bool = False,
    group_scales: dict[str, dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed group and a no-decay group.

    One-dimensional parameters (biases, normalisation scales and shifts) go into the no-decay
    group unless ``decay_norm_and_bias``. Lists of parameter-group dicts pass through as given.

    ``group_scales`` (a module is needed) gives a category of :data:`CATEGORIES` its own group
    with multipliers of the learning rate and of the weight decay, e.g. the records'
    ``{"norm_bias": {"lr": 64, "weight_decay": 1 / 64}}``; such groups carry ``"lr_scale"``,
    which :func:`create_optimizer` turns into the group's ``"lr"``.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
        >>> groups = param_groups(net, 0.1, group_scales={"norm_bias": {"lr": 64.0, "weight_decay": 0.5}})
        >>> [(len(g["params"]), g["weight_decay"], g.get("lr_scale", 1.0)) for g in groups]
        [(1, 0.1, 1.0), (2, 0.0, 1.0), (1, 0.0, 64.0)]
    """
    if isinstance(model_or_params, nn.Module):
        params = [p for p in model_or_params.parameters() if p.requires_grad]
    else:
        if group_scales:
            raise ValueError("group_scales needs the model (to tell norm parameters from others), not a list of parameters")
        params = list(model_or_params)
        if params and isinstance(params[0], dict):
            return params
    if not params:
        raise ValueError("no trainable parameters to optimize (every requires_grad is False?)")

    def decay_of(p: torch.Tensor) -> float:
        return weight_decay if decay_norm_and_bias or p.dim() >= 2 else 0.0

    if group_scales:
        for category, scales in group_scales.items():
            if category not in CATEGORIES:
                raise unknown("parameter category in group_scales", category, CATEGORIES)
            if not isinstance(scales, dict) or set(scales) - {"lr", "weight_decay"}:
                raise ValueError(f"group_scales[{category!r}] must be a dict with keys 'lr' and/or 'weight_decay', got {scales!r}")
            for key, value in scales.items():
                check_nonnegative(f"group_scales[{category!r}][{key!r}]", value)
        kind = _categories(model_or_params)
        keyed: dict[tuple, dict[str, Any]] = {}
        for p in params:
            category = kind.get(id(p), "weight")
            scales = group_scales.get(category, {})
            key = (decay_of(p), category if scales else None)
            group = keyed.setdefault(key, {"params": [], "weight_decay": decay_of(p) * scales.get("weight_decay", 1.0)})
            if scales:
                group["lr_scale"] = float(scales.get("lr", 1.0))
            group["params"].append(p)
        return list(keyed.values())
    if decay_norm_and_bias or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def _all_cuda(groups: list[dict[str, Any]]) -> bool:
    return all(p.is_cuda and p.is_floating_point() for g in groups for p in g["params"])


def create_optimizer(
    model_or_params: nn.Module | Iterable[Any],
    name: str,
    *,
    lr: float,
    weight_decay: float = 0.0,
    decay_norm_and_bias: bool = False,
    group_scales: dict[str, dict[str, float]] | None = None,
    fused: bool | None = None,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Build a torch optimizer by name (never a re-implementation), with no-decay groups.

    Args:
        model_or_params: a module, an iterable of parameters, or parameter-group dicts.
        name: one of :func:`list_optimizers`.
        lr: learning rate.
        weight_decay: applied to weights only; biases and norm parameters get 0 unless
            ``decay_norm_and_bias``.
        group_scales: per-category multipliers of ``lr`` and ``weight_decay`` (see
            :func:`param_groups`), e.g. ``{"norm_bias": {"lr": 64, "weight_decay": 1 / 64}}``.
        fused: ``None`` (default) uses torch's fused kernel when every parameter is on CUDA
            and torch has one for them, else its foreach path; ``True`` asks for the fused
            kernel on any device torch supports (torch 2.13 has CPU kernels for Adam, AdamW,
            SGD and Adagrad) and raises a ``ValueError`` naming the devices and dtypes where it
            does not; ``False`` never fuses. For ``"radam"``, ``fused=True`` selects trickbag's
            :class:`~trickbag.optim.FusedRAdam` (torch has no fused RAdam) on CUDA and falls
            back to ``torch.optim.RAdam`` elsewhere.
        **kwargs: passed to the torch optimizer (``momentum``, ``nesterov``, ``betas``, ...).

    Returns:
        The ``torch.optim.Optimizer``.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
        >>> opt = create_optimizer(model, "sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
        >>> type(opt).__name__, [g["weight_decay"] for g in opt.param_groups]
        ('SGD', [0.0005, 0.0])
    """
    key = str(name).lower()
    if key not in _OPTIMIZERS and key != "muon":
        raise unknown("optimizer", name, list_optimizers())
    check_positive("lr", lr)
    check_nonnegative("weight_decay", weight_decay)
    if key == "muon":
        return _hybrid_muon(model_or_params, lr=lr, weight_decay=weight_decay, decay_norm_and_bias=decay_norm_and_bias,
                            group_scales=group_scales, fused=fused, **kwargs)
    cls = _OPTIMIZERS[key]
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "params")]
    for arg in kwargs:
        if arg not in valid:
            raise unknown(f"argument for {key}", arg, [*valid, "decay_norm_and_bias", "group_scales"])

    groups = param_groups(model_or_params, weight_decay, decay_norm_and_bias=decay_norm_and_bias,
                          group_scales=group_scales)
    for g in groups:
        if "lr_scale" in g:
            g["lr"] = lr * g.pop("lr_scale")
    on_cuda = _all_cuda(groups)

    if key == "radam" and fused:
        if on_cuda:
            from trickbag.optim.radam import FusedRAdam

            return FusedRAdam(groups, lr=lr, weight_decay=weight_decay, **kwargs)
        warnings.warn(
            "fused RAdam runs on CUDA parameters only; falling back to torch.optim.RAdam",
            stacklevel=2,
        )
        fused = None
    if "fused" not in valid:
        if fused:
            raise ValueError(f"torch has no fused {key}; fused=True is valid for: {', '.join(_fused_names())}")
        return cls(groups, lr=lr, weight_decay=weight_decay, **kwargs)
    if fused is None and not on_cuda:  # the default off CUDA: torch's foreach path
        return cls(groups, lr=lr, weight_decay=weight_decay, **kwargs)
    if fused is False:
        return cls(groups, lr=lr, weight_decay=weight_decay, **kwargs)
    problem = _fused_problem(key, groups)
    if problem is None:
        return cls(groups, lr=lr, weight_decay=weight_decay, fused=True, **kwargs)
    if fused is None:  # a default, not a request: e.g. Adagrad's fused kernel is CPU-only
        return cls(groups, lr=lr, weight_decay=weight_decay, **kwargs)
    where = sorted({f"{p.device.type} {str(p.dtype).replace('torch.', '')}" for g in groups for p in g["params"]})
    raise ValueError(f"torch's fused {key} does not take these parameters ({', '.join(where)}): {problem}")


def _fused_problem(key: str, groups: list[dict[str, Any]]) -> str | None:
    """Why torch's fused kernel cannot take these parameters, or None. torch checks only at the
    first ``step()``; asking its own check here turns that into an error at construction."""
    try:
        from torch.optim.optimizer import _device_dtype_check_for_fused
    except ImportError:  # pragma: no cover - older or newer torch: the documented rule
        _device_dtype_check_for_fused = None
    for g in groups:
        for p in g["params"]:
            if _device_dtype_check_for_fused is None:
                if not (p.is_floating_point() and p.device.type in ("cpu", "cuda")) or (
                        key == "adagrad" and p.device.type == "cuda"):
                    return f"{p.dtype} on {p.device.type}"
                continue
            try:
                _device_dtype_check_for_fused(p, cuda_unsupported=key == "adagrad")
            except RuntimeError as err:
                return str(err)
    return None


_MUON_ARGS = ("momentum", "nesterov", "ns_steps", "adjust_lr_fn", "exclude", "aux")


def _hybrid_muon(model: nn.Module | Iterable[Any], *, lr: float, weight_decay: float, decay_norm_and_bias: bool,
                 group_scales: dict | None, fused: bool | None, **kwargs: Any) -> torch.optim.Optimizer:
    """``name="muon"``: torch's Muon on the hidden matrices, ``aux`` (default AdamW, lr 1e-3) on the rest."""
    from trickbag.optim.muon import HybridMuon, muon_parameters

    for arg in kwargs:
        if arg not in _MUON_ARGS:
            raise unknown("argument for muon", arg, _MUON_ARGS)
    if not isinstance(model, nn.Module):
        raise ValueError("optimizer muon needs the model (to find its hidden layers), not a list of parameters")
    aux_spec = dict(kwargs.pop("aux", None) or {"name": "adamw", "lr": 1e-3})
    if "name" not in aux_spec or "lr" not in aux_spec:
        raise ValueError(f"muon's aux optimizer needs a name and an lr, e.g. {{name: sgd, lr: 0.1}}; got {aux_spec!r}")
    muon_names, rest_names = muon_parameters(model, exclude=tuple(kwargs.pop("exclude", ())))
    named = dict(model.named_parameters())
    rest_ids = {id(named[n]) for n in rest_names}
    aux = None
    if rest_names:
        groups = param_groups(model, aux_spec.pop("weight_decay", weight_decay), decay_norm_and_bias=decay_norm_and_bias,
                              group_scales=group_scales)
        groups = [{**g, "params": [p for p in g["params"] if id(p) in rest_ids]} for g in groups]
        groups = [g for g in groups if g["params"]]
        aux_name, aux_lr = aux_spec.pop("name"), aux_spec.pop("lr")
        if str(aux_name).lower() == "muon":
            raise ValueError("muon's aux optimizer cannot be muon")
        aux = create_optimizer(groups, aux_name, lr=aux_lr, fused=fused, **aux_spec)  # lr_scale -> lr there
    return HybridMuon([named[n] for n in muon_names], aux, lr=lr, weight_decay=weight_decay, **kwargs)


def _fused_names() -> list[str]:
    """Optimizer names with a fused kernel (torch's, plus trickbag's FusedRAdam)."""
    names = {n for n, c in _OPTIMIZERS.items() if "fused" in inspect.signature(c.__init__).parameters}
    return sorted(names | {"radam"})
