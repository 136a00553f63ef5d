"""Lookahead (Zhang et al. 2019): k fast steps forward, one step back towards slow weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from trickbag._validate import check_positive_int, check_range

__all__ = ["Lookahead"]


class Lookahead(torch.optim.Optimizer):
    r"""Wrap any optimizer: after every ``k`` inner steps, move the slow weights
    :math:`\phi \leftarrow \phi + \alpha(\theta - \phi)` and reset the fast weights
    :math:`\theta \leftarrow \phi`.

    It shares the inner optimizer's ``param_groups``, so LR schedulers and step hooks attached
    to the Lookahead reach the inner optimizer. ``state_dict()`` holds the inner optimizer's
    state, the slow weights, the step counter, ``k`` and ``alpha``; ``load_state_dict`` restores
    them all, as torch optimizers restore their hyper-parameters.

    Args:
        optimizer: the inner ("fast") optimizer.
        k: inner steps per slow update, ``>= 1``. Default 5.
        alpha: slow step size in ``(0, 1]``. Default 0.5.

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = Lookahead(torch.optim.SGD([w], lr=0.1), k=2, alpha=0.5)
        >>> for _ in range(2):
        ...     w.grad = torch.tensor([1.0]); opt.step()
        >>> w.data  # fast weights went 1.0 -> 0.8, pulled back half way to 0.9
        tensor([0.9000])

    Reference: Zhang, Lucas, Hinton, Ba, "Lookahead Optimizer: k steps forward, 1 step back",
    NeurIPS 2019.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 5, alpha: float = 0.5):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"Lookahead wraps a torch.optim.Optimizer, got {type(optimizer).__name__}")
        check_positive_int("k", k)
        check_range("alpha", alpha, 0.0, 1.0, low_open=True)
        self._initialising = True
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self._initialising = False
        self.optimizer = optimizer
        self.param_groups = optimizer.param_groups  # shared, not copied
        self.k = k
        self.alpha = alpha
        self.lookahead_steps = 0
        self._slow = [p.detach().clone() for p in self._params()]

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if getattr(self, "_initialising", True):
            super().add_param_group(param_group)
            return
        self.optimizer.add_param_group(param_group)  # appears in the shared list
        self._slow.extend(p.detach().clone() for p in self.param_groups[-1]["params"])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = self.optimizer.step(closure)
        self.lookahead_steps += 1
        if self.lookahead_steps % self.k == 0:
            fast = self._params()
            torch._foreach_lerp_(self._slow, fast, self.alpha)
            torch._foreach_copy_(fast, self._slow)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {
            "optimizer": self.optimizer.state_dict(),
            "slow": [s.clone() for s in self._slow],
            "lookahead_steps": self.lookahead_steps,
            "k": self.k,
            "alpha": self.alpha,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        missing = {"optimizer", "slow", "lookahead_steps"} - set(state_dict)
        if missing:
            raise ValueError(f"not a Lookahead state dict: missing {sorted(missing)}")
        if len(state_dict["slow"]) != len(self._slow):
            raise ValueError(
                f"state dict has {len(state_dict['slow'])} slow weights, this optimizer has "
                f"{len(self._slow)} parameters"
            )
        k, alpha = state_dict.get("k", self.k), state_dict.get("alpha", self.alpha)  # checked before any change
        check_positive_int("k", k)
        check_range("alpha", alpha, 0.0, 1.0, low_open=True)
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self.param_groups = self.optimizer.param_groups
        for s, saved in zip(self._slow, state_dict["slow"]):
            s.copy_(saved)
        self.lookahead_steps = int(state_dict["lookahead_steps"])
        # like the inner optimizer's hyper-parameters (lr, betas ...), k and alpha come back too
        self.k, self.alpha = k, alpha

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, optimizer={self.optimizer!r})"
