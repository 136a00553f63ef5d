"""FusedRAdam: torch.optim.RAdam's update in one pass over memory per parameter group.

torch ships fused Adam/AdamW/SGD but no fused RAdam; its foreach RAdam makes about a dozen
passes over the parameters per step. The update here is the same arithmetic, with the
per-step scalars (bias corrections, the variance rectification term) computed once on the
host and the elementwise work done by a Triton kernel on CUDA. A foreach backend with the
same host-side arithmetic serves other devices and is what CPU tests exercise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from trickbag._validate import check_choice, check_nonnegative, check_range

__all__ = ["FusedRAdam", "radam_coefficients"]


def radam_coefficients(step: int, lr: float, beta1: float, beta2: float) -> tuple[bool, float]:
    """(rectified?, step size) of RAdam at 1-based ``step``, as ``torch.optim.RAdam`` computes them.

    The update is ``p -= step_size * m / (sqrt(v) + eps)`` when rectified, else
    ``p -= step_size * m``.

    Example:
        >>> rectified, step_size = radam_coefficients(1, 1e-3, 0.9, 0.999)
        >>> rectified, round(step_size, 6)  # early steps are plain momentum SGD: lr / (1 - beta1)
        (False, 0.01)
    """
    bc1 = 1 - beta1**step
    bc2 = 1 - beta2**step
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * (beta2**step) / bc2
    if rho_t > 5.0:
        rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        return True, lr * rect * math.sqrt(bc2) / bc1
    return False, lr / bc1


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class _Plan:
    """The cached layout of one parameter group's step.

    The group's tensors share one step counter tensor while the plan lives (one ``add_`` a
    step instead of a foreach over many CPU scalars, which costs more than the update itself);
    ``FusedRAdam.state_dict`` hands out a copy per parameter, as torch's RAdam has."""

    def __init__(self, params: list[Tensor], states: list[dict], step: float, buckets: dict):
        self.params = params
        self.ids = [id(p) for p in params]
        self.step_tensor = torch.tensor(step)
        for s in states:
            s["step"] = self.step_tensor
        self.buckets = [
            (fast, [params[i] for i in idx], [states[i]["exp_avg"] for i in idx], [states[i]["exp_avg_sq"] for i in idx])
            for (_, _, fast), idx in buckets.items()
        ]
        self.grad_strides = [p.grad.stride() for p in params]

    def same(self, params: list[Tensor]) -> bool:
        return (len(params) == len(self.ids) and all(id(p) == i for p, i in zip(params, self.ids))
                and all(p.grad.stride() == s for p, s in zip(params, self.grad_strides)))


def _same_layout(p: Tensor, *others: Tensor) -> bool:
    """Can one flat index walk ``p`` and every tensor of ``others`` in step? The kernel reads
    element ``i`` of each at the same offset, so all must be dense with ``p``'s strides and
    dtype: gradient, exp_avg and exp_avg_sq alike (a moment in another memory layout would be
    paired with the wrong elements)."""
    dense = p.is_contiguous() or (p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last))
    return dense and all(t.stride() == p.stride() and t.dtype == p.dtype for t in others)


class FusedRAdam(torch.optim.Optimizer):
    r"""RAdam (Liu et al. 2020) with a fused update; a drop-in for ``torch.optim.RAdam``.

    Same arguments, same arithmetic (``weight_decay`` as L2, or decoupled as in AdamW with
    ``decoupled_weight_decay=True``), same state-dict layout (``step``, ``exp_avg``,
    ``exp_avg_sq`` per parameter), so checkpoints move between the two.

    Args:
        params: parameters or parameter groups.
        lr, betas, eps, weight_decay, decoupled_weight_decay, maximize: as torch.optim.RAdam.
        backend: ``"auto"`` (Triton for CUDA tensors when installed, else foreach),
            ``"triton"`` or ``"foreach"``.

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.ones(3))
        >>> opt = FusedRAdam([w], lr=0.1)
        >>> w.grad = torch.ones(3); opt.step(); w.data
        tensor([0.9000, 0.9000, 0.9000])

    Reference: Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
    ICLR 2020.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        backend: str = "auto",
    ):
        check_nonnegative("lr", lr)
        check_range("betas[0]", betas[0], 0.0, 1.0, high_open=True)
        check_range("betas[1]", betas[1], 0.0, 1.0, high_open=True)
        check_nonnegative("eps", eps)
        check_nonnegative("weight_decay", weight_decay)
        self.backend = check_choice("backend", backend, ("auto", "triton", "foreach"))
        if backend == "triton" and not _triton_available():
            raise ValueError("backend='triton' needs the triton package (installed with CUDA builds of torch)")
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
        )
        self._plans: dict[int, _Plan] = {}
        self._tables: dict[tuple, Any] = {}
        super().__init__(params, defaults)

    def _state_for(self, p: Tensor) -> dict[str, Tensor]:
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._plans.clear()  # moment tensors were replaced: addresses changed
        self._tables.clear()
        for p, state in self.state.items():
            if "step" in state:  # keep the counter on the host, as torch's non-capturable RAdam
                state["step"] = state["step"].detach().float().cpu()
            # Moments saved from parameters in another memory layout (a contiguous checkpoint
            # loaded into a channels_last model) are re-laid out like their parameter, element
            # for element, so the fused kernel can take them.
            for key in ("exp_avg", "exp_avg_sq"):
                t = state.get(key)
                if isinstance(t, Tensor) and t.shape == p.shape and t.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=t.dtype).copy_(t)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if hasattr(self, "_plans"):
            self._plans.clear()

    def _plan(self, params: list[Tensor]) -> _Plan | None:
        """What a step over exactly these tensors needs, computed once and reused while the
        same tensors have gradients (the usual case: every step of a training run). None when
        they are at different step counts (then each count is updated on its own)."""
        states = [self._state_for(p) for p in params]
        steps = {float(s["step"]) for s in states}
        if len(steps) != 1:
            return None
        fast_ok = self.backend != "foreach" and _triton_available()
        buckets: dict[tuple, list[int]] = {}
        for i, (p, s) in enumerate(zip(params, states)):
            fast = (fast_ok and p.is_cuda and _same_layout(p, p.grad, s["exp_avg"], s["exp_avg_sq"])
                    and p.dtype in _KERNEL_DTYPES
                    and all(t.data_ptr() % 16 == 0 for t in (p, p.grad, s["exp_avg"], s["exp_avg_sq"])))
            buckets.setdefault((p.dtype, p.device, fast), []).append(i)
        return _Plan(params, states, steps.pop(), buckets)

    def _unshare_steps(self) -> None:
        for p, state in self.state.items():
            if "step" in state:
                state["step"] = state["step"].clone()
        self._plans.clear()

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        sd = super().state_dict()
        sd["state"] = {k: {**v, "step": v["step"].clone()} if "step" in v else dict(v) for k, v in sd["state"].items()}
        return sd

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            plan = self._plans.get(index)
            if plan is None or not plan.same(params):
                if any(p.grad.is_sparse for p in params):
                    raise ValueError("FusedRAdam does not support sparse gradients")
                if plan is not None:
                    self._unshare_steps()
                plan = self._plan(params)
                if plan is None:  # tensors at different step counts (rare)
                    self._step_by_count(index, group, params)
                    continue
                self._plans[index] = plan
            plan.step_tensor.add_(1.0)
            step = int(plan.step_tensor.item())  # a CPU tensor: no device synchronisation
            for fast, ps, exp_avgs, exp_avg_sqs in plan.buckets:
                self._update(index, group, step, ps, exp_avgs, exp_avg_sqs, fast)
        return loss

    def _step_by_count(self, index: int, group: dict, params: list[Tensor]) -> None:
        states = [self.state[p] for p in params]
        torch._foreach_add_([s["step"] for s in states], 1.0)
        buckets: dict[int, list[int]] = {}
        for i, s in enumerate(states):
            buckets.setdefault(int(s["step"].item()), []).append(i)
        for step, idx in buckets.items():
            self._update(index, group, step, [params[i] for i in idx], [states[i]["exp_avg"] for i in idx],
                         [states[i]["exp_avg_sq"] for i in idx], False)

    def _update(self, index: int, group: dict, step: int, ps: list[Tensor], exp_avgs: list[Tensor],
                exp_avg_sqs: list[Tensor], fast: bool) -> None:
        beta1, beta2 = group["betas"]
        lr = float(group["lr"])
        wd = group["weight_decay"]
        decoupled = group["decoupled_weight_decay"]
        rectified, step_size = radam_coefficients(step, lr, beta1, beta2)
        grads = [p.grad for p in ps]
        if fast:
            from trickbag.optim import _triton_radam

            key = (index, tuple(p.data_ptr() for p in ps))  # a parameter moved: new tables
            tables = self._tables.get(key)
            if tables is None:
                self._tables = {k: v for k, v in self._tables.items() if k[0] != index}
                tables = self._tables[key] = _triton_radam.BlockTables(ps, exp_avgs, exp_avg_sqs)
            done = _triton_radam.launch(
                tables,
                grads,
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                decay=(1 - lr * wd) if decoupled else wd,
                step_size=step_size,
                rectified=rectified,
                decoupled=decoupled,
                has_decay=wd != 0,
                maximize=group["maximize"],
            )
            if done:
                return
        if group["maximize"]:
            grads = torch._foreach_neg(grads)
        if wd != 0:
            if decoupled:
                torch._foreach_mul_(ps, 1 - lr * wd)
            else:
                grads = torch._foreach_add(grads, ps, alpha=wd)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        if rectified:
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_add_(denom, group["eps"])
            torch._foreach_addcdiv_(ps, exp_avgs, denom, value=-step_size)
        else:
            torch._foreach_add_(ps, exp_avgs, alpha=-step_size)
