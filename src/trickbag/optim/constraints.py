"""Weight constraints applied after each update, through ``register_step_post_hook``."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from trickbag._validate import check_positive

__all__ = ["max_norm_", "attach_max_norm"]


@torch.no_grad()
def max_norm_(weights: Iterable[Tensor], max_norm: float, *, dim: int = 0) -> None:
    r"""Rescale, in place, every slice of each weight along ``dim`` whose L2 norm exceeds
    ``max_norm`` back onto the sphere of that radius (``torch.renorm``).

    .. math:: w_j \leftarrow w_j \cdot \min\big(1, c / \lVert w_j \rVert_2\big)

    For a ``Linear`` weight ``(out, in)``, ``dim=0`` constrains each output unit's incoming
    weight vector, as Kim (2014) does for the classifier of his text CNN (``c = 3``).

    Example:
        >>> import torch
        >>> w = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
        >>> max_norm_([w], 1.0); w
        tensor([[0.6000, 0.8000],
                [0.3000, 0.4000]])

    Reference: Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, "Dropout: A Simple Way
    to Prevent Neural Networks from Overfitting", JMLR 2014; Kim, "Convolutional Neural
    Networks for Sentence Classification", EMNLP 2014.
    """
    check_positive("max_norm", max_norm)
    for w in weights:
        w.copy_(torch.renorm(w, 2, dim, max_norm))


def attach_max_norm(optimizer: torch.optim.Optimizer, weights: Iterable[Tensor], max_norm: float, *,
                    dim: int = 0) -> torch.utils.hooks.RemovableHandle:
    """Apply :func:`max_norm_` to ``weights`` after every ``optimizer.step()``; returns the
    hook's handle (``.remove()`` detaches it).

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(4, 2)
        >>> opt = torch.optim.SGD(layer.parameters(), lr=10.0)
        >>> _ = attach_max_norm(opt, [layer.weight], 0.5)
        >>> layer(torch.ones(1, 4)).sum().backward(); opt.step()
        >>> bool((layer.weight.norm(dim=1) <= 0.5 + 1e-6).all())
        True
    """
    check_positive("max_norm", max_norm)
    weights = list(weights)

    def hook(opt, args, kwargs):
        max_norm_(weights, max_norm, dim=dim)

    return optimizer.register_step_post_hook(hook)
