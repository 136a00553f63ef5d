"""Muon for a network's hidden matrices (torch.optim.Muon), another torch optimizer for the rest."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from trickbag._validate import check_nonnegative, check_positive_int

__all__ = ["muon_parameters", "HybridMuon"]

_MUON_KEYS = ("lr", "weight_decay", "momentum", "nesterov", "ns_steps", "adjust_lr_fn")


def muon_parameters(model: nn.Module, *, exclude: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Names of the parameters Muon should take, and of the rest, in the usual hybrid set-up.

    Muon takes the hidden layers' matrices: the weights of convolutions and linear layers, except
    the first such layer (it sees the raw input) and the last linear layer (the classifier
    head); embeddings, biases, normalisation parameters and any name containing one of
    ``exclude`` go to the other optimizer. Frozen parameters are left out of both.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3), torch.nn.Flatten(),
        ...                           torch.nn.LazyLinear(4))
        >>> muon_parameters(net)[0]
        ['1.weight']
    """
    weighted = [(name, m) for name, m in model.named_modules()
                if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and m.weight.requires_grad]
    first = weighted[0][0] if weighted else None
    linears = [name for name, m in weighted if isinstance(m, nn.Linear)]
    head = linears[-1] if linears else None
    hidden = {f"{name}.weight" if name else "weight" for name, m in weighted
              if name not in (first, head) and m.weight.dim() >= 2}
    muon, rest = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (muon if name in hidden and not any(x in name for x in exclude) else rest).append(name)
    return muon, rest


def _layout(p: Tensor) -> str:
    if p.dim() == 2 or p.is_contiguous():
        return "rows"
    if p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last):
        return "channels_last"
    raise ValueError(f"HybridMuon needs contiguous or channels_last parameters, got strides {p.stride()} "
                     f"for shape {tuple(p.shape)}")


def _as_matrix(t: Tensor, layout: str) -> Tensor:
    """``t`` as an (out, fan-in) matrix whose columns follow the parameter's memory order (a
    view of the parameter; Newton-Schulz orthogonalisation commutes with column permutations)."""
    if layout == "channels_last":
        return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1)
    return t.reshape(t.shape[0], -1)


def _from_matrix(m: Tensor, shape: torch.Size, layout: str) -> Tensor:
    """The inverse of :func:`_as_matrix`, into the canonical (contiguous) layout."""
    if layout == "channels_last":
        o, i, h, w = shape
        return m.reshape(o, h, w, i).permute(0, 3, 1, 2).contiguous()
    return m.reshape(shape).contiguous()


class HybridMuon(torch.optim.Optimizer):
    r"""``torch.optim.Muon`` (Jordan et al. 2024) on the hidden layers' matrices and another torch
    optimizer (SGD, AdamW ...) on everything else, as one ``torch.optim.Optimizer``.

    Muon replaces a matrix's momentum-averaged gradient by its nearest semi-orthogonal matrix
    (five Newton-Schulz iterations), :math:`W \leftarrow W - \eta\, \mathrm{NS}(M)`. torch's Muon
    takes 2-D parameters only; convolution weights are handed to it as matrix views of the same
    memory (``(out, in * k * k)``, channels-last kept as it is), so torch's own update runs on
    them. ``param_groups`` hold the real parameters (the Muon group first, then the other
    optimizer's groups, shared), so LR schedules, step pre-hooks (clipping, noise) and a
    ``GradScaler`` see them as usual. ``state_dict`` stores Muon's momentum in the parameters'
    canonical layout, so a checkpoint loads into a model of another memory layout.

    Args:
        muon_params: the hidden matrices (see :func:`muon_parameters`).
        aux: the optimizer for the other parameters, already built (its groups are shared).
        lr, weight_decay, momentum, nesterov, ns_steps, adjust_lr_fn: torch.optim.Muon's.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
        >>> hidden = [net[1].weight]
        >>> rest = [p for p in net.parameters() if p is not net[1].weight]
        >>> opt = HybridMuon(hidden, torch.optim.SGD(rest, lr=0.1), lr=0.02)
        >>> net(torch.randn(3, 4)).sum().backward(); opt.step()
        >>> len(opt.param_groups)
        2

    Reference: Jordan, Jin, Boza, You, Cesista, Newhouse, Bernstein, "Muon: An optimizer for
    hidden layers in neural networks", 2024 (the CIFAR-10 and NanoGPT speedruns).
    """

    def __init__(
        self,
        muon_params: Sequence[Tensor],
        aux: torch.optim.Optimizer | None,
        *,
        lr: float = 0.02,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
    ):
        check_nonnegative("lr", lr)
        check_nonnegative("weight_decay", weight_decay)
        check_nonnegative("momentum", momentum)
        check_positive_int("ns_steps", ns_steps)
        params = list(muon_params)
        if not params:
            raise ValueError("HybridMuon got no parameters for Muon (the model has no hidden matrices?)")
        for p in params:
            if p.dim() not in (2, 4):
                raise ValueError(f"Muon takes 2-D (linear) and 4-D (conv) weights, got shape {tuple(p.shape)}")
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                        adjust_lr_fn=adjust_lr_fn)
        super().__init__([{"params": params, **defaults}], defaults)
        self.aux = aux
        if aux is not None:
            ours = {id(p) for p in params}
            if any(id(p) in ours for g in aux.param_groups for p in g["params"]):
                raise ValueError("a parameter is in both the Muon group and the other optimizer")
            self.param_groups.extend(aux.param_groups)  # the same dicts: schedules reach both
        self._layouts = [_layout(p) for p in params]
        self._proxies = [_as_matrix(p.detach(), lay) for p, lay in zip(params, self._layouts)]
        self._muon = torch.optim.Muon(self._proxies, **defaults)

    @property
    def muon_params(self) -> list[Tensor]:
        return self.param_groups[0]["params"]

    def _refresh_proxies(self) -> None:
        """Re-point the matrix views if a parameter's memory moved (``model.to(...)``)."""
        for i, p in enumerate(self.muon_params):
            proxy = self._proxies[i]
            if proxy.data_ptr() == p.data_ptr() and self._layouts[i] == _layout(p):
                continue
            state = self._muon.state.pop(proxy, {})
            old_layout = self._layouts[i]
            self._layouts[i] = _layout(p)
            new = _as_matrix(p.detach(), self._layouts[i])
            if "momentum_buffer" in state:
                canonical = _from_matrix(state["momentum_buffer"], p.shape, old_layout)
                state["momentum_buffer"] = _as_matrix(canonical.to(p.device).contiguous(
                    memory_format=torch.channels_last if self._layouts[i] == "channels_last" else torch.contiguous_format),
                    self._layouts[i]).clone()
            self._muon.param_groups[0]["params"][i] = new
            self._proxies[i] = new
            if state:
                self._muon.state[new] = state

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._refresh_proxies()
        ours, inner = self.param_groups[0], self._muon.param_groups[0]
        for key in _MUON_KEYS:
            inner[key] = ours[key]
        for p, proxy, layout in zip(self.muon_params, self._proxies, self._layouts):
            proxy.grad = None if p.grad is None else _as_matrix(p.grad, layout)
        self._muon.step()
        for proxy in self._proxies:
            proxy.grad = None
        if self.aux is not None:
            self.aux.step()
        return loss

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        buffers = {}
        for i, (p, proxy, layout) in enumerate(zip(self.muon_params, self._proxies, self._layouts)):
            buf = self._muon.state.get(proxy, {}).get("momentum_buffer")
            if buf is not None:
                buffers[i] = _from_matrix(buf, p.shape, layout).clone()
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"muon": {"group": group, "momentum": buffers, "count": len(self.muon_params)},
                "aux": self.aux.state_dict() if self.aux is not None else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        if set(state_dict) != {"muon", "aux"}:
            raise ValueError(f"not a HybridMuon state dict: keys {sorted(state_dict)}")
        saved = state_dict["muon"]
        if saved["count"] != len(self.muon_params):
            raise ValueError(f"the state dict has {saved['count']} Muon parameters, this optimizer "
                             f"{len(self.muon_params)}")
        for i, buf in saved["momentum"].items():
            p = self.muon_params[int(i)]
            if tuple(buf.shape) != tuple(p.shape):
                raise ValueError(f"Muon momentum {i} has shape {tuple(buf.shape)}, its parameter {tuple(p.shape)}")
        if (state_dict["aux"] is None) != (self.aux is None):
            raise ValueError("the state dict and this optimizer disagree on having a second optimizer")
        if self.aux is not None:
            self.aux.load_state_dict(state_dict["aux"])
            self.param_groups[1:] = self.aux.param_groups  # load_state_dict replaced the dicts
        self.param_groups[0].update(saved["group"])
        self._refresh_proxies()
        self._muon.state.clear()
        for i, buf in saved["momentum"].items():
            i = int(i)
            p, layout = self.muon_params[i], self._layouts[i]
            like = buf.to(device=p.device, dtype=p.dtype)
            if layout == "channels_last":
                like = like.contiguous(memory_format=torch.channels_last)
            self._muon.state[self._proxies[i]] = {"momentum_buffer": _as_matrix(like, layout).clone()}
