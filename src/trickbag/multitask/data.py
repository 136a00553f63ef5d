"""Multi-task batches: ``(x, {task: y})`` from any loader of ``(x, y)``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["TaskBatches", "label_map", "FASHION_MNIST_COARSE"]

#: Fashion-MNIST's ten classes grouped into four coarse ones: tops (T-shirt/top, pullover,
#: dress, coat, shirt), bottoms (trouser), footwear (sandal, sneaker, ankle boot) and bags.
FASHION_MNIST_COARSE = {"classes": ["tops", "bottoms", "footwear", "bags"], "map": [0, 1, 0, 0, 0, 2, 0, 2, 3, 2]}


def label_map(mapping: Sequence[int]) -> Callable[[Tensor], Tensor]:
    """A function taking class indices to ``mapping[y]`` (a coarse label derived from a fine one).

    Example:
        >>> label_map(FASHION_MNIST_COARSE["map"])(torch.tensor([0, 1, 8, 9])).tolist()
        [0, 1, 3, 2]
    """
    table = torch.as_tensor(list(mapping), dtype=torch.long)
    if table.dim() != 1 or table.numel() == 0 or (table < 0).any():
        raise ValueError(f"a label map is a list of non-negative class indices, got {list(mapping)!r}")
    return lambda y: table.to(y.device)[y]


class TaskBatches:
    """Wrap a loader of ``(x, y)`` into one of ``(x, {task: target})``.

    ``tasks`` maps each task to how its targets come from the loader's ``y``: ``None`` (``y``
    itself), an int (column ``y[:, i]`` of ``(N, T)`` targets) or a function of ``y`` (a label
    map). Everything else (length, epochs, resumable state, device) is the wrapped loader's.

    Example:
        >>> from trickbag.data import ArrayDataset, DeviceLoader
        >>> data = ArrayDataset(torch.zeros(4, 2), torch.tensor([0, 1, 8, 9]))
        >>> loader = TaskBatches(DeviceLoader(data, 4, shuffle=False), {"fine": None, "coarse": label_map([0, 1, 0, 0, 0, 2, 0, 2, 3, 2])})
        >>> x, y = next(iter(loader)); {k: v.tolist() for k, v in y.items()}
        {'fine': [0, 1, 8, 9], 'coarse': [0, 1, 3, 2]}
    """

    def __init__(self, loader: Any, tasks: Mapping[str, None | int | Callable[[Tensor], Tensor]]):
        if not tasks:
            raise ValueError("TaskBatches needs at least one task")
        for name, how in tasks.items():
            if how is not None and not isinstance(how, int) and not callable(how):
                raise ValueError(f"task {name!r}: give None, a column index or a function of y, got {how!r}")
        self.loader, self.tasks = loader, dict(tasks)

    def __getattr__(self, name: str) -> Any:  # device, set_epoch, state_dict, ... of the loader
        if name in ("loader", "tasks"):
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def _targets(self, y: Tensor) -> dict[str, Tensor]:
        out = {}
        for name, how in self.tasks.items():
            out[name] = y if how is None else y[:, how] if isinstance(how, int) else how(y)
        return out

    def __iter__(self) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
        for x, y in self.loader:
            yield x, self._targets(y)
