"""Gradient transforms attached to an optimizer through ``register_step_pre_hook``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.utils.hooks import RemovableHandle

from trickbag._validate import check_nonnegative, check_positive

__all__ = [
    "centralize_gradients_",
    "attach_gradient_centralization",
    "attach_grad_clipping",
    "gradient_noise_std",
    "add_gradient_noise_",
    "attach_gradient_noise",
]


class _Segments:
    """Cached row layout for centralising a set of gradient shapes in one pass."""

    def __init__(self, shapes: tuple[torch.Size, ...], device: torch.device):
        rows = [s[0] for s in shapes]
        row_len = [int(torch.Size(s[1:]).numel()) for s in shapes]
        self.sizes = [r * k for r, k in zip(rows, row_len)]
        lengths = [k for r, k in zip(rows, row_len) for _ in range(r)]
        self.lengths = torch.tensor(lengths, device=device, dtype=torch.long)
        self.total = sum(self.sizes)


_SEGMENT_CACHE: dict[tuple, _Segments] = {}


def _by_device_and_dtype(grads: list[Tensor], what: str) -> dict[tuple, list[Tensor]]:
    """Group dense gradients for foreach kernels (which need one device and dtype per list)."""
    if any(g.is_sparse for g in grads):
        raise ValueError(f"{what} does not support sparse gradients")
    groups: dict[tuple, list[Tensor]] = {}
    for g in grads:
        groups.setdefault((g.device, g.dtype), []).append(g)
    return groups


@torch.no_grad()
def centralize_gradients_(params: Iterable[Tensor], *, conv_only: bool = False) -> None:
    r"""Gradient centralisation, in place: subtract from each gradient its mean over every
    dimension but the first (the output unit), for parameters with two or more dimensions.

    .. math:: \nabla_{w_i} \leftarrow \nabla_{w_i} - \frac{1}{M}\sum_{j=1}^{M} \nabla_{w_{i,j}}

    All gradients are handled together in a constant number of kernels (one concatenation, a
    segmented mean, one subtraction and a foreach copy back), not a Python loop of small
    kernels per parameter.

    Args:
        params: parameters whose ``.grad`` to centralise (others are skipped).
        conv_only: only 4-D (convolution) weights, as the paper's "GC-conv" variant.

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.zeros(2, 3)); w.grad = torch.tensor([[1., 2., 3.], [0., 0., 3.]])
        >>> centralize_gradients_([w]); w.grad
        tensor([[-1.,  0.,  1.],
                [-1., -1.,  2.]])

    Reference: Yong, Huang, Hua, Zhang, "Gradient Centralization: A New Optimization
    Technique for Deep Neural Networks", ECCV 2020.
    """
    min_dim = 4 if conv_only else 2
    grads = [p.grad for p in params if p.grad is not None and p.grad.dim() >= min_dim]
    if not grads:
        return
    for (device, _), group in _by_device_and_dtype(grads, "gradient centralisation").items():
        key = (device, tuple(g.shape for g in group))
        seg = _SEGMENT_CACHE.get(key)
        if seg is None:
            seg = _SEGMENT_CACHE[key] = _Segments(key[1], device)
        flat = torch.cat([g.reshape(-1) for g in group])
        # half and bfloat16 gradients are averaged in float32; float64 stays float64
        means = torch.segment_reduce(flat.to(torch.promote_types(flat.dtype, torch.float32)), "mean",
                                     lengths=seg.lengths)
        flat -= means.to(flat.dtype).repeat_interleave(seg.lengths, output_size=seg.total)
        torch._foreach_copy_(group, [v.view_as(g) for v, g in zip(flat.split(seg.sizes), group)])


def _params_of(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


@torch.no_grad()
def _true_gradients_(optimizer: torch.optim.Optimizer, params: list[Tensor]) -> bool:
    """Make the gradients a step pre-hook sees the true ones; False when the step is skipped.

    ``torch.amp.GradScaler.step`` does not unscale for optimizers with their own scale handling
    (torch's fused SGD, Adam, AdamW, Adagrad): it sets ``optimizer.grad_scale`` and
    ``optimizer.found_inf`` and lets the fused kernel unscale, after the step pre-hooks ran on
    gradients still multiplied by the scale. Here the gradients are unscaled in place (as
    ``GradScaler.unscale_`` does: times the float32 reciprocal of the scale) and the optimizer is
    handed no scale, so that clipping thresholds and noise act on true gradients and the kernel
    does not divide twice. When ``found_inf`` is set the update will be skipped, as GradScaler
    skips ``step`` for other optimizers, so the hook does nothing (the noise counter included).
    """
    found_inf = getattr(optimizer, "found_inf", None)
    if isinstance(found_inf, Tensor) and bool(found_inf.item()):
        return False
    scale = getattr(optimizer, "grad_scale", None)
    if isinstance(scale, Tensor):
        inv = scale.double().reciprocal().float()
        grads = [p.grad for p in params if p.grad is not None]
        for (device, _), group in _by_device_and_dtype(grads, "unscaling").items():
            torch._foreach_mul_(group, inv.to(device))
        optimizer.grad_scale = None  # type: ignore[attr-defined]  # GradScaler deletes it after the step
    return True


def attach_gradient_centralization(
    optimizer: torch.optim.Optimizer, *, conv_only: bool = False
) -> RemovableHandle:
    """Centralise gradients just before every ``optimizer.step()``.

    Returns:
        The hook's handle; ``handle.remove()`` detaches it.

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(3, 2)
        >>> opt = torch.optim.SGD(lin.parameters(), lr=1.0)
        >>> handle = attach_gradient_centralization(opt)
        >>> lin(torch.randn(4, 3)).sum().backward(); before = lin.weight.clone()
        >>> opt.step()
        >>> torch.allclose((lin.weight - before).mean(dim=1), torch.zeros(2), atol=1e-6)
        True
        >>> handle.remove()
    """

    def hook(opt: torch.optim.Optimizer, args, kwargs) -> None:
        params = _params_of(opt)
        if _true_gradients_(opt, params):  # centralisation is linear, but a later hook may clip
            centralize_gradients_(params, conv_only=conv_only)

    return optimizer.register_step_pre_hook(hook)


def attach_grad_clipping(
    optimizer: torch.optim.Optimizer,
    *,
    max_norm: float | None = None,
    max_value: float | None = None,
    norm_type: float = 2.0,
) -> RemovableHandle:
    """Clip gradients before every ``optimizer.step()`` with torch's own foreach clipping.

    Args:
        max_norm: rescale so the global ``norm_type`` norm is at most this
            (``torch.nn.utils.clip_grad_norm_``).
        max_value: clamp every gradient element to ``[-max_value, max_value]``
            (``torch.nn.utils.clip_grad_value_``), applied before the norm clipping.
        norm_type: the norm for ``max_norm``. Default 2.

    Returns:
        The hook's handle.

    In a loop with ``torch.amp.GradScaler`` the thresholds apply to the true (unscaled)
    gradients, fused optimizers included (whose kernels would otherwise unscale after the hook).

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.zeros(2)); opt = torch.optim.SGD([w], lr=1.0)
        >>> _ = attach_grad_clipping(opt, max_norm=1.0)
        >>> w.grad = torch.tensor([3.0, 4.0]); opt.step(); w.data
        tensor([-0.6000, -0.8000])
    """
    if max_norm is None and max_value is None:
        raise ValueError("attach_grad_clipping needs max_norm or max_value (got neither)")
    if max_norm is not None:
        check_positive("max_norm", max_norm)
    if max_value is not None:
        check_positive("max_value", max_value)

    def hook(opt: torch.optim.Optimizer, args, kwargs) -> None:
        params = [p for p in _params_of(opt) if p.grad is not None]
        if not params or not _true_gradients_(opt, params):
            return
        if max_value is not None:
            torch.nn.utils.clip_grad_value_(params, max_value, foreach=True)
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type, foreach=True)

    return optimizer.register_step_pre_hook(hook)


def gradient_noise_std(step: int, *, eta: float = 0.3, gamma: float = 0.55) -> float:
    r"""The annealed standard deviation of gradient noise at update ``step`` (counted from 0):

    .. math:: \sigma_t = \sqrt{\eta / (1 + t)^{\gamma}}

    Example:
        >>> gradient_noise_std(0, eta=0.3), round(gradient_noise_std(99, eta=1.0, gamma=0.5), 4)
        (0.5477225575051661, 0.3162)
    """
    check_nonnegative("step", step)
    check_positive("eta", eta)
    check_nonnegative("gamma", gamma)
    return math.sqrt(eta / (1 + step) ** gamma)


@torch.no_grad()
def add_gradient_noise_(
    params: Iterable[Tensor], *, std: float, generator: torch.Generator | None = None
) -> None:
    """Add Gaussian noise of standard deviation ``std`` to every gradient, in place.

    One normal draw per (device, dtype) group, split and added with a foreach kernel: the cost
    does not grow with the number of parameter tensors. The draw order is fixed by the order
    of ``params``, so a seeded ``generator`` (on the gradients' device) gives the same noise on
    every run and every data-parallel rank.

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.zeros(10000)); w.grad = torch.zeros(10000)
        >>> add_gradient_noise_([w], std=0.5, generator=torch.Generator().manual_seed(0))
        >>> round(w.grad.std().item(), 1)
        0.5

    Reference: Neelakantan et al., "Adding Gradient Noise Improves Learning for Very Deep
    Networks", 2015.
    """
    check_nonnegative("std", std)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or std == 0:
        return
    for (device, dtype), group in _by_device_and_dtype(grads, "gradient noise").items():
        sizes = [g.numel() for g in group]
        noise = torch.randn(sum(sizes), device=device, dtype=dtype, generator=generator)
        torch._foreach_add_(group, [n.view_as(g) for n, g in zip(noise.split(sizes), group)], alpha=std)


def attach_gradient_noise(
    optimizer: torch.optim.Optimizer,
    *,
    eta: float = 0.3,
    gamma: float = 0.55,
    seed: int | None = None,
    step_fn: Callable[[], int] | None = None,
) -> RemovableHandle:
    r"""Add annealed Gaussian noise to the gradients before every ``optimizer.step()``:
    standard deviation :func:`gradient_noise_std` at update ``t``.

    Args:
        eta: the noise variance at the first update; the paper uses 0.01, 0.3 or 1.0.
        gamma: the decay exponent (0.55 in the paper).
        seed: draw update ``t``'s noise from a generator seeded by ``(seed, t)``, so the noise
            does not depend on (or disturb) the global RNG, repeats exactly after a resume and
            is identical on every data-parallel rank. ``None`` uses the global RNG.
        step_fn: returns the current update number; by default the hook counts its own calls
            from 0 (the trainer passes its step, which a checkpoint restores).

    Returns:
        The hook's handle.

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.zeros(4)); opt = torch.optim.SGD([w], lr=1.0)
        >>> handle = attach_gradient_noise(opt, eta=0.3, seed=0)
        >>> w.grad = torch.zeros(4); opt.step()
        >>> bool((w.data != 0).all())
        True
        >>> handle.remove()
    """
    check_positive("eta", eta)
    check_nonnegative("gamma", gamma)
    calls = [0]
    generators: dict[torch.device, torch.Generator] = {}

    def hook(opt: torch.optim.Optimizer, args, kwargs) -> None:
        params = [p for p in _params_of(opt) if p.grad is not None]
        if params and not _true_gradients_(opt, params):
            return  # GradScaler found inf/NaN: the update is skipped, as for unfused optimizers
        t = step_fn() if step_fn is not None else calls[0]
        calls[0] += 1
        if not params:
            return
        std = gradient_noise_std(t, eta=eta, gamma=gamma)
        if seed is None:
            add_gradient_noise_(params, std=std)
            return
        by_device: dict[torch.device, list[Tensor]] = {}
        for p in params:
            by_device.setdefault(p.grad.device, []).append(p)
        for device, group in by_device.items():
            gen = generators.get(device)
            if gen is None:
                gen = generators[device] = torch.Generator(device=device)
            gen.manual_seed((seed * 1_000_003 + t) % (2**63))
            add_gradient_noise_(group, std=std, generator=gen)

    return optimizer.register_step_pre_hook(hook)
