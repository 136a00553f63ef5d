"""Optimizers (a registry over torch.optim, Lookahead, FusedRAdam) and gradient transforms."""

from trickbag.optim.constraints import attach_max_norm, max_norm_
from trickbag.optim.factory import create_optimizer, list_optimizers, param_groups
from trickbag.optim.lookahead import Lookahead
from trickbag.optim.muon import HybridMuon, muon_parameters
from trickbag.optim.radam import FusedRAdam, radam_coefficients
from trickbag.optim.transforms import (
    add_gradient_noise_,
    attach_grad_clipping,
    attach_gradient_centralization,
    attach_gradient_noise,
    centralize_gradients_,
    gradient_noise_std,
)

__all__ = [
    "FusedRAdam",
    "HybridMuon",
    "Lookahead",
    "add_gradient_noise_",
    "attach_grad_clipping",
    "attach_max_norm",
    "attach_gradient_centralization",
    "attach_gradient_noise",
    "centralize_gradients_",
    "create_optimizer",
    "gradient_noise_std",
    "list_optimizers",
    "max_norm_",
    "muon_parameters",
    "param_groups",
    "radam_coefficients",
]
