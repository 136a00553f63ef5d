"""Attacks on the data's own scale: undo a loader's normalisation around the model (private)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from trickbag._validate import check_choice
from trickbag.augment import Normalizer

SPACES = ("model", "data")


class DataSpace:
    """Where an attack's ``eps`` and ``clamp`` live.

    ``"model"``: the batches as the model sees them (after the loader's normalisation).
    ``"data"``: the data's own scale: for images a loader normalises (a trickbag
    :class:`~trickbag.augment.Normalizer`), ``[0, 1]`` pixels; the attack runs on
    ``normalize(x)``'s inverse through ``model(normalize(.))`` and is clipped to ``[0, 1]``
    unless ``clamp`` says otherwise. Data without a normaliser is already on its own scale.
    """

    def __init__(self, model: nn.Module, loader: Any, space: str, clamp: Any = "auto"):
        check_choice("space", space, SPACES)
        norm = getattr(loader, "normalize", None) if space == "data" else None
        self.unit = None
        if isinstance(norm, Normalizer):
            self.unit = Normalizer(norm.mean.flatten(), norm.std.flatten()).to(norm.mean.device)
        self.model = nn.Sequential(self.unit, model) if self.unit is not None else model
        if isinstance(clamp, str):
            check_choice("clamp", clamp, ("auto",))
            clamp = (0.0, 1.0) if self.unit is not None else None
        if clamp is not None and (len(clamp) != 2 or clamp[0] >= clamp[1]):
            raise ValueError(f"clamp must be 'auto', None or (low, high) with low < high, got {clamp!r}")
        self.clamp = tuple(clamp) if clamp is not None else None

    def to_data(self, z: Tensor) -> Tensor:
        if self.unit is None:
            return z
        x = z.float() * self.unit.std + self.unit.mean
        return x.clamp(*self.clamp) if self.clamp is not None else x

    def to_model(self, x: Tensor, like: Tensor) -> Tensor:
        out = self.unit(x) if self.unit is not None else x
        return out.to(like.dtype)
