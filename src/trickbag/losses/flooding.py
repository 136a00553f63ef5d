"""Flooding (Ishida et al. 2020): keep the training loss around a flood level b."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from trickbag._validate import check_nonnegative

__all__ = ["flood", "Flooding"]


def flood(loss: Tensor, b: float) -> Tensor:
    r"""Flood a (mini-batch mean) loss at level ``b``.

    .. math:: \tilde J = |J - b| + b

    Above ``b`` the value and gradient are unchanged; below it the gradient flips sign, so the
    optimiser climbs back up instead of driving the training loss to zero.

    Args:
        loss: the scalar training loss (flood the batch mean, not per-example losses).
        b: the flood level, ``>= 0``.

    Returns:
        The flooded loss, equal in value to ``loss`` wherever ``loss >= b``.

    Example:
        >>> import torch
        >>> flood(torch.tensor(0.05), 0.1)
        tensor(0.1500)

    Reference: Ishida, Yamane, Sakai, Niu, Sugiyama, "Do We Need Zero Training Loss After
    Achieving Zero Training Error?", ICML 2020.
    """
    check_nonnegative("b", b)
    return (loss - b).abs() + b


class Flooding(nn.Module):
    """Wrap a criterion so that its (reduced) loss is flooded at ``b``.

    Example:
        >>> import torch
        >>> crit = Flooding(torch.nn.CrossEntropyLoss(), b=0.5)
        >>> z = torch.tensor([[10.0, 0.0]]); y = torch.tensor([0])
        >>> round(crit(z, y).item(), 4)  # CE is 4.5e-5 here: |4.5e-5 - 0.5| + 0.5
        1.0
    """

    def __init__(self, criterion: Callable[[Tensor, Tensor], Tensor], b: float):
        super().__init__()
        check_nonnegative("b", b)
        self.criterion = criterion
        self.b = b

    def forward(self, outputs: Tensor, target: Tensor) -> Tensor:
        loss = self.criterion(outputs, target)
        if loss.dim() != 0:
            raise ValueError(
                f"Flooding needs a scalar loss (reduction='mean' or 'sum'), got shape "
                f"{tuple(loss.shape)}"
            )
        return flood(loss, self.b)

    def extra_repr(self) -> str:
        return f"b={self.b}"
