"""Loaders: the whole data set on the device (DeviceLoader), or torch's DataLoader."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from trickbag._validate import check_positive_int
from trickbag.data.core import ArrayDataset

__all__ = ["DeviceLoader", "TorchLoader"]

Transform = Callable[..., Tensor]


def _check_device(device: str | torch.device) -> torch.device:
    """The device, or a clear error where torch would assert (CUDA asked for, none present)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available; use 'cpu' (or the trainer's 'auto')")
    return device


class _Batches:
    """What both loaders share: on-device batch preparation and resumable position."""

    device: torch.device
    normalize: Transform | None
    augment: Transform | None
    channels_last: bool
    generator: torch.Generator
    epoch: int
    position: int

    def _finish(self, x: Tensor, indices: Tensor | None = None) -> Tensor:
        if self.normalize is not None:
            x = self.normalize(x)
        if self.augment is not None:
            if getattr(self.augment, "uses_indices", False):  # e.g. alternating flips
                x = self.augment(x, generator=self.generator, indices=indices, epoch=self.epoch, seed=self.seed)
            else:
                x = self.augment(x, generator=self.generator)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.generator.set_state(state["generator"].cpu())


class DeviceLoader(_Batches):
    """Batches drawn from a data set kept whole on the device.

    The data set moves to the device once (images stay uint8); every epoch draws a permutation
    on the device, and normalisation and augmentation run batched on the device: there is no
    host-to-device copy and no host synchronisation per step. Under data parallelism each rank
    takes its own shard of the same permutation.

    The loader is resumable: :meth:`state_dict` holds the epoch, the position within it and
    the augmentation generator's state; permutations are derived from ``(seed, epoch)``.

    Args:
        data: the data set.
        batch_size: examples per batch.
        device: where to keep the data.
        shuffle: draw a new permutation every epoch (training). Default True.
        drop_last: drop the last incomplete batch. Default: equal to ``shuffle``.
        normalize: applied to every batch first (e.g. a ``Normalizer`` turning uint8 into
            standardised floats).
        augment: applied next, with the loader's generator (e.g. a ``Compose``); augmentations
            marked ``uses_indices`` also get the batch's indices in the data set, the epoch and
            the loader's ``seed`` (:class:`~trickbag.augment.AlternatingFlip`).
        seed: seeds the permutations and the augmentation generator.
        rank, world_size: this process's shard under data parallelism.
        channels_last: emit 4-D batches in channels-last memory format.

    Example:
        >>> import torch
        >>> data = ArrayDataset(torch.arange(10.0)[:, None], torch.arange(10))
        >>> loader = DeviceLoader(data, 4, shuffle=False)
        >>> [y.tolist() for _, y in loader]
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    """

    def __init__(
        self,
        data: ArrayDataset,
        batch_size: int,
        *,
        device: str | torch.device = "cpu",
        shuffle: bool = True,
        drop_last: bool | None = None,
        normalize: Transform | None = None,
        augment: Transform | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
    ):
        check_positive_int("batch_size", batch_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank!r}")
        self.device = _check_device(device)
        self.inputs = data.inputs.to(self.device)
        self.targets = data.targets.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = shuffle if drop_last is None else drop_last
        self.normalize = normalize.to(self.device) if isinstance(normalize, torch.nn.Module) else normalize
        self.augment = augment
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.channels_last = channels_last
        self.epoch = 0
        self.position = 0  # batches already taken in this epoch
        self.generator = torch.Generator(device=self.device).manual_seed(seed + 7919 * rank)
        if len(self) == 0:
            raise ValueError(
                f"{len(data)} examples give no full batch of {batch_size} (per rank: {self._shard_size()})"
            )

    def _shard_size(self) -> int:
        return len(self.inputs) // self.world_size if self.world_size > 1 else len(self.inputs)

    def __len__(self) -> int:
        n = self._shard_size()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> Tensor:
        n = len(self.inputs)
        if self.shuffle:
            gen = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, device=self.device, generator=gen)
        else:
            order = torch.arange(n, device=self.device)
        if self.world_size > 1:
            order = order[: self._shard_size() * self.world_size][self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self._order()
        for b in range(self.position, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self._finish(self.inputs.index_select(0, idx), idx)
            y = self.targets.index_select(0, idx)
            self.position = b + 1
            yield x, y
        self.epoch += 1
        self.position = 0


class TorchLoader(_Batches):
    """torch's ``DataLoader`` for data that does not fit on the device, with the same
    interface as :class:`DeviceLoader`: batches move to the device (pinned, non-blocking),
    then normalisation and augmentation run batched there. Resuming mid-epoch skips the
    batches already taken (the order is seeded per epoch)."""

    def __init__(
        self,
        data: torch.utils.data.Dataset,
        batch_size: int,
        *,
        device: str | torch.device = "cpu",
        shuffle: bool = True,
        drop_last: bool | None = None,
        normalize: Transform | None = None,
        augment: Transform | None = None,
        seed: int = 0,
        num_workers: int = 0,
        batch_keys: tuple[str, str] = ("input", "label"),
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
    ):
        self.device = _check_device(device)
        self.data, self.batch_size, self.shuffle = data, batch_size, shuffle
        self.drop_last = shuffle if drop_last is None else drop_last
        self.normalize = normalize.to(self.device) if isinstance(normalize, torch.nn.Module) else normalize
        if getattr(augment, "uses_indices", False):
            raise ValueError(
                f"augmentation {augment!r} needs each example's index in the data set, which only the "
                "DeviceLoader passes: use data.loader: device"
            )
        self.augment, self.seed, self.num_workers = augment, seed, num_workers
        self.batch_keys = tuple(batch_keys)
        self.rank, self.world_size, self.channels_last = rank, world_size, channels_last
        self.epoch, self.position = 0, 0
        self.generator = torch.Generator(device=self.device).manual_seed(seed + 7919 * rank)

    def _loader(self) -> torch.utils.data.DataLoader:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        sampler = None
        if self.world_size > 1:
            sampler = torch.utils.data.DistributedSampler(
                self.data, self.world_size, self.rank, shuffle=self.shuffle, seed=self.seed, drop_last=True
            )
            sampler.set_epoch(self.epoch)
        return torch.utils.data.DataLoader(
            self.data, self.batch_size, shuffle=self.shuffle and sampler is None, sampler=sampler,
            drop_last=self.drop_last, num_workers=self.num_workers, generator=gen,
            pin_memory=self.device.type == "cuda",
        )

    def __len__(self) -> int:
        return len(self._loader())

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for b, batch in enumerate(self._loader()):
            if b < self.position:
                continue
            if isinstance(batch, Mapping):  # dict items (Hugging Face style): keys name inputs and targets
                x, y = batch[self.batch_keys[0]], batch[self.batch_keys[1]]
            else:
                x, y = batch
            x = self._finish(x.to(self.device, non_blocking=True))
            y = y.to(self.device, non_blocking=True)
            self.position = b + 1
            yield x, y
        self.epoch += 1
        self.position = 0
