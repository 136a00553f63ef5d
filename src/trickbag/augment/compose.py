"""Module forms of the augmentations, ``Compose``, and pipelines built from config specs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from trickbag._validate import unknown
from trickbag.augment import erase, geometric

__all__ = [
    "Augmentation",
    "HFlip",
    "VFlip",
    "AlternatingFlip",
    "Rotate",
    "Translate",
    "Scale",
    "RandomCrop",
    "GaussianNoise",
    "Cutout",
    "Compose",
    "AUGMENTATIONS",
    "build_augment",
]


class Augmentation(nn.Module):
    """Base for the module forms: ``forward(x, generator=None)`` calls the batched function."""

    fn: Callable[..., Tensor]

    def __init__(self, **kwargs: Any):
        super().__init__()
        self.kwargs = kwargs
        # Validate eagerly on a tiny batch so bad arguments fail at construction.
        self.fn(torch.zeros(1, 1, 64, 64), **kwargs)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return type(self).fn(x, **self.kwargs, generator=generator)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())


def _module(name: str, fn: Callable[..., Tensor], doc: str) -> type[Augmentation]:
    cls = type(name, (Augmentation,), {"fn": staticmethod(fn), "__doc__": doc, "__module__": __name__})
    return cls


HFlip = _module("HFlip", geometric.hflip, "Module form of :func:`~trickbag.augment.hflip` (``p=0.5``).")
VFlip = _module("VFlip", geometric.vflip, "Module form of :func:`~trickbag.augment.vflip` (``p=0.5``).")
Rotate = _module("Rotate", geometric.rotate, "Module form of :func:`~trickbag.augment.rotate` (``max_degrees``).")
Translate = _module("Translate", geometric.translate, "Module form of :func:`~trickbag.augment.translate` (``max_pixels``).")
Scale = _module("Scale", geometric.scale, "Module form of :func:`~trickbag.augment.scale` (``min_scale, max_scale``).")
RandomCrop = _module("RandomCrop", geometric.random_crop, "Module form of :func:`~trickbag.augment.random_crop` (``padding``).")
GaussianNoise = _module("GaussianNoise", erase.gaussian_noise, "Module form of :func:`~trickbag.augment.gaussian_noise` (``std``).")
Cutout = _module("Cutout", erase.cutout, "Module form of :func:`~trickbag.augment.cutout` (``size``).")

class AlternatingFlip(nn.Module):
    """Module form of :func:`~trickbag.augment.alternating_flip`: example ``i`` is mirrored in
    every other epoch. It needs each image's index in the data set and the epoch, which the
    :class:`~trickbag.data.DeviceLoader` passes to augmentations marked ``uses_indices``; give it
    to the loader (``data.augment`` or the ``alternating_flip`` trick), not to the Augment callback.

    ``seed`` picks which half of the images starts mirrored. None (the default) follows the
    loader's seed, which is the run's ``train.seed``: runs with different seeds flip different
    halves, as they draw different orders. An integer fixes the pattern whatever the run's seed.

    Example:
        >>> import torch
        >>> flip = AlternatingFlip(seed=0)
        >>> x = torch.rand(4, 3, 8, 8); idx = torch.arange(4)
        >>> bool(torch.equal(flip(flip(x, indices=idx, epoch=0), indices=idx, epoch=0), x))
        True
    """

    uses_indices = True
    fn = staticmethod(geometric.alternating_flip)

    def __init__(self, seed: int | None = None):
        super().__init__()
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError(f"seed must be an integer or None (follow the loader's seed), got {seed!r}")
        self.seed = seed

    def forward(self, x: Tensor, generator: torch.Generator | None = None, *, indices: Tensor | None = None,
                epoch: int | None = None, seed: int | None = None) -> Tensor:
        if indices is None or epoch is None:
            raise ValueError(
                "AlternatingFlip needs each image's index and the epoch: use it in the DeviceLoader's "
                "augmentation (data.augment, or tricks: [alternating_flip]), which passes them"
            )
        own = self.seed if self.seed is not None else (seed if seed is not None else 0)
        return geometric.alternating_flip(x, indices, epoch, seed=own)

    def extra_repr(self) -> str:
        return f"seed={'loader' if self.seed is None else self.seed}"


#: Config names of the augmentations (``data.augment`` entries and ``tricks``).
AUGMENTATIONS: dict[str, type[nn.Module]] = {
    "hflip": HFlip,
    "alternating_flip": AlternatingFlip,
    "vflip": VFlip,
    "rotate": Rotate,
    "translate": Translate,
    "scale": Scale,
    "random_crop": RandomCrop,
    "gaussian_noise": GaussianNoise,
    "cutout": Cutout,
}


class Compose(nn.Module):
    """Apply augmentations in order, passing one generator through all of them (and, to those
    marked ``uses_indices``, the images' indices, the epoch and the loader's seed).

    Example:
        >>> import torch
        >>> pipeline = Compose([RandomCrop(padding=4), HFlip(), Cutout(size=8)])
        >>> x = torch.rand(16, 3, 32, 32)
        >>> a = pipeline(x, generator=torch.Generator().manual_seed(0))
        >>> b = pipeline(x, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.equal(a, b)), a.shape
        (True, torch.Size([16, 3, 32, 32]))
    """

    def __init__(self, ops: Sequence[Callable[..., Tensor]]):
        super().__init__()
        self.ops = nn.ModuleList([op for op in ops if isinstance(op, nn.Module)])
        self._ops = list(ops)
        for op in self._ops:
            if not callable(op):
                raise ValueError(f"Compose takes callables x -> x, got {op!r}")

    @property
    def uses_indices(self) -> bool:
        return any(getattr(op, "uses_indices", False) for op in self._ops)

    def forward(self, x: Tensor, generator: torch.Generator | None = None, *, indices: Tensor | None = None,
                epoch: int | None = None, seed: int | None = None) -> Tensor:
        for op in self._ops:
            if getattr(op, "uses_indices", False):
                x = op(x, generator=generator, indices=indices, epoch=epoch, seed=seed)
            else:
                x = op(x, generator=generator)
        return x

    def __len__(self) -> int:
        return len(self._ops)


def build_augment(spec: Sequence[str | Mapping[str, Any]] | None) -> Compose | None:
    """Build a pipeline from a config list such as
    ``["hflip", {"random_crop": {"padding": 4}}, {"cutout": {"size": 8}}]``.

    Example:
        >>> build_augment(["hflip", {"cutout": {"size": 8}}])
        Compose(
          (ops): ModuleList(
            (0): HFlip()
            (1): Cutout(size=8)
          )
        )
    """
    if not spec:
        return None
    ops = []
    for item in spec:
        if isinstance(item, str):
            name, params = item, {}
        elif isinstance(item, Mapping) and len(item) == 1:
            name, params = next(iter(item.items()))
            params = dict(params or {})
        else:
            raise ValueError(f"an augmentation is a name or {{name: {{params}}}}, got {item!r}")
        if name not in AUGMENTATIONS:
            raise unknown("augmentation", name, AUGMENTATIONS)
        try:
            ops.append(AUGMENTATIONS[name](**params))
        except TypeError as exc:
            raise ValueError(f"augmentation {name!r}: {exc}") from None
    return Compose(ops)
