"""Activation functions by name, torch's own modules where they exist."""

from __future__ import annotations

from torch import nn

from trickbag._validate import unknown
from trickbag.layers.shrinkage import SoftThreshold

__all__ = ["ACTIVATIONS", "make_activation"]

ACTIVATIONS = ("relu", "leaky_relu", "elu", "tanh", "sigmoid", "gelu", "silu", "swish", "mish", "soft_threshold", "identity")


def make_activation(name: str, *, channels: int | None = None, negative_slope: float = 0.01) -> nn.Module:
    """An activation module by name.

    ``relu``, ``leaky_relu`` (``negative_slope``), ``elu``, ``tanh``, ``sigmoid``, ``gelu``,
    ``silu`` (alias ``swish``), ``mish`` and ``identity`` are torch's modules;
    ``soft_threshold`` is :class:`~trickbag.layers.SoftThreshold` and needs ``channels``.

    Example:
        >>> make_activation("swish"), make_activation("leaky_relu", negative_slope=0.1)
        (SiLU(), LeakyReLU(negative_slope=0.1))
    """
    key = str(name).lower()
    simple = {
        "relu": nn.ReLU,
        "elu": nn.ELU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "swish": nn.SiLU,
        "mish": nn.Mish,
        "identity": nn.Identity,
    }
    if key in simple:
        return simple[key]()
    if key == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    if key == "soft_threshold":
        if channels is None:
            raise ValueError("make_activation('soft_threshold') needs channels= (the thresholds are per channel)")
        return SoftThreshold(channels)
    raise unknown("activation", name, ACTIVATIONS)
