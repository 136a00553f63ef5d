"""L1 and L2 weight penalties that leave biases and normalisation parameters alone."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from trickbag._validate import check_nonnegative

__all__ = ["l1_penalty", "l2_penalty", "penalized_parameters"]


def penalized_parameters(model: nn.Module, *, include_bias_and_norm: bool = False) -> list[Tensor]:
    """The trainable parameters a weight penalty applies to.

    By default only tensors with two or more dimensions (weights of linear, convolution and
    embedding layers): biases and normalisation scales and shifts are one-dimensional.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if include_bias_and_norm:
        return params
    return [p for p in params if p.dim() >= 2]


def _params(model: nn.Module | Iterable[Tensor], include_bias_and_norm: bool) -> list[Tensor]:
    if isinstance(model, nn.Module):
        return penalized_parameters(model, include_bias_and_norm=include_bias_and_norm)
    return list(model)


def l1_penalty(
    model: nn.Module | Iterable[Tensor], weight: float, *, include_bias_and_norm: bool = False
) -> Tensor:
    r"""The L1 penalty :math:`\lambda \sum_i |w_i|`, to add to the loss.

    Args:
        model: a module (weights selected by :func:`penalized_parameters`) or tensors.
        weight: :math:`\lambda \ge 0`.
        include_bias_and_norm: penalise one-dimensional parameters too. Default False.

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(2, 1)
        >>> with torch.no_grad(): lin.weight.copy_(torch.tensor([[1.0, -2.0]]))
        Parameter containing:
        tensor([[ 1., -2.]], requires_grad=True)
        >>> l1_penalty(lin, 0.1)  # the bias is left out
        tensor(0.3000, grad_fn=<MulBackward0>)
    """
    check_nonnegative("weight", weight)
    params = _params(model, include_bias_and_norm)
    if not params:
        return torch.zeros(())
    return weight * torch.stack(torch._foreach_norm(params, 1)).sum()


def l2_penalty(
    model: nn.Module | Iterable[Tensor], weight: float, *, include_bias_and_norm: bool = False
) -> Tensor:
    r"""The L2 penalty :math:`\frac{\lambda}{2} \sum_i w_i^2`, to add to the loss.

    With the factor one half, its gradient is :math:`\lambda w`: adding it to the loss of plain
    SGD gives exactly ``torch.optim.SGD(weight_decay=weight)`` on the same parameters.

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad(): lin.weight.copy_(torch.tensor([[3.0, 4.0]]))
        Parameter containing:
        tensor([[3., 4.]], requires_grad=True)
        >>> l2_penalty(lin, 0.1)  # 0.05 * 25
        tensor(1.2500, grad_fn=<MulBackward0>)
    """
    check_nonnegative("weight", weight)
    params = _params(model, include_bias_and_norm)
    if not params:
        return torch.zeros(())
    norms = torch.stack(torch._foreach_norm(params, 2))
    return (0.5 * weight) * (norms * norms).sum()
