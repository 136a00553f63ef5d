"""Optimizers (a registry over torch.optim, Lookahead, FusedRAdam) and gradient transforms."""

from trickbag.optim.factory import create_optimizer, list_optimizers, param_groups
from trickbag.optim.lookahead import Lookahead
from trickbag.optim.radam import FusedRAdam, radam_coefficients
from trickbag.optim.transforms import (
    attach_grad_clipping,
    attach_gradient_centralization,
    centralize_gradients_,
)

__all__ = [
    "FusedRAdam",
    "Lookahead",
    "attach_grad_clipping",
    "attach_gradient_centralization",
    "centralize_gradients_",
    "create_optimizer",
    "list_optimizers",
    "param_groups",
    "radam_coefficients",
]
