"""Multi-task models: hard sharing (one trunk, named heads) and soft sharing (a model per task,
kept close by a penalty)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from trickbag.losses import soft_sharing_penalty

__all__ = ["MultiTask", "SoftSharing", "split_head"]


class MultiTask(nn.Module):
    """Hard parameter sharing: a shared ``trunk`` and one head per task; ``forward(x)``
    returns ``{task: head(trunk(x))}``.

    Train it in the Trainer with batches ``(x, {task: y})`` and a
    :class:`~trickbag.losses.MultiTaskLoss`; pass that loss as ``loss=`` when it learns its
    task weights (uncertainty weighting), so that its parameters are the model's too (the
    optimizer and checkpoints see them).

    Example:
        >>> import torch
        >>> net = MultiTask(torch.nn.Linear(8, 16), {"fine": torch.nn.Linear(16, 10), "coarse": torch.nn.Linear(16, 4)})
        >>> {k: tuple(v.shape) for k, v in net(torch.randn(2, 8)).items()}
        {'fine': (2, 10), 'coarse': (2, 4)}

    Reference: Caruana, "Multitask Learning", Machine Learning 28, 1997.
    """

    def __init__(self, trunk: nn.Module, heads: Mapping[str, nn.Module], *, loss: nn.Module | None = None):
        super().__init__()
        if not heads:
            raise ValueError("MultiTask needs at least one head ({task: module})")
        self.trunk = trunk
        self.heads = nn.ModuleDict(dict(heads))
        if loss is not None:
            self.loss = loss

    @property
    def tasks(self) -> list[str]:
        return list(self.heads)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.trunk(x)
        return {task: head(h) for task, head in self.heads.items()}


class SoftSharing(nn.Module):
    """Soft parameter sharing: one full model per task, ``forward(x) -> {task: model(x)}``, and
    :meth:`penalty` = ``coefficient`` times the squared distance between the models' shared
    parameters (:func:`~trickbag.losses.soft_sharing_penalty`), which the
    :class:`~trickbag.train.callbacks.SoftSharingPenalty` callback adds to the loss.

    Example:
        >>> import torch
        >>> net = SoftSharing({"a": torch.nn.Linear(3, 2), "b": torch.nn.Linear(3, 2)}, coefficient=0.01)
        >>> sorted(net(torch.randn(4, 3))), net.penalty().dim()
        (['a', 'b'], 0)
    """

    def __init__(self, models: Mapping[str, nn.Module], *, coefficient: float = 1e-3,
                 prefixes: Sequence[str] | None = None):
        super().__init__()
        if len(models) < 2:
            raise ValueError(f"soft sharing needs at least two task models, got {list(models)}")
        self.models = nn.ModuleDict(dict(models))
        self.coefficient, self.prefixes = coefficient, prefixes
        soft_sharing_penalty(list(self.models.values()), coefficient, prefixes=prefixes)  # validates

    @property
    def tasks(self) -> list[str]:
        return list(self.models)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {task: model(x) for task, model in self.models.items()}

    def penalty(self) -> Tensor:
        return soft_sharing_penalty(list(self.models.values()), self.coefficient, prefixes=self.prefixes)


def split_head(model: nn.Module) -> tuple[nn.Module, int]:
    """(trunk, features) of a model whose last layer is its ``nn.Linear`` head: an
    ``nn.Sequential`` ending in one (``mlp``, ``small_cnn``), or a module with a ``head`` that
    is or ends in one (``resnet_cifar``). The trunk is a copy; the model is left alone.

    Example:
        >>> import torch
        >>> trunk, features = split_head(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)))
        >>> features, trunk(torch.randn(2, 4)).shape
        (8, torch.Size([2, 8]))
    """
    model = copy.deepcopy(model)
    if isinstance(model, nn.Sequential) and isinstance(model[-1], nn.Linear):
        return model[:-1], model[-1].in_features
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        model.head = nn.Identity()
        return model, head.in_features
    if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
        features = head[-1].in_features
        model.head = head[:-1]
        return model, features
    raise ValueError(f"cannot find the linear head of {type(model).__name__}: give MultiTask a trunk and heads yourself")
