"""Layers: BlurPool, normalisation, soft thresholding, residual blocks, activations."""

from trickbag.layers.activations import ACTIVATIONS, make_activation
from trickbag.layers.blurpool import BlurPool2d, apply_blurpool, binomial_filter, blur_pool2d
from trickbag.layers.norms import NORMS, apply_batchnorm_options, apply_group_norm, apply_spectral_norm, group_count, make_norm
from trickbag.layers.residual import ResidualBlock
from trickbag.layers.shrinkage import ShrinkageResidualBlock, SoftThreshold, soft_threshold

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "BlurPool2d",
    "ResidualBlock",
    "ShrinkageResidualBlock",
    "SoftThreshold",
    "apply_batchnorm_options",
    "apply_blurpool",
    "apply_group_norm",
    "apply_spectral_norm",
    "binomial_filter",
    "blur_pool2d",
    "group_count",
    "make_activation",
    "make_norm",
    "soft_threshold",
]
