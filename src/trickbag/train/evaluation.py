"""Evaluation and prediction for the Trainer: loss, top-1/top-5 accuracy, custom metrics and
per-task metrics of multi-task models over a loader, and a model's outputs on a loader.
:meth:`Trainer.evaluate <trickbag.train.trainer.Trainer.evaluate>` and
:meth:`Trainer.predict <trickbag.train.trainer.Trainer.predict>` call these."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from trickbag.train._runtime import _to
from trickbag.train.distributed import all_reduce_sum

if TYPE_CHECKING:
    from trickbag.train.trainer import Trainer

__all__ = ["evaluate", "predict"]


def _plain_forward(model: nn.Module, x: Tensor) -> Tensor:
    return model(x)


def _float(tree: Any) -> Any:
    """Outputs in float32: a tensor, or each tensor of a dict of task outputs."""
    if isinstance(tree, Mapping):
        return {k: _float(v) for k, v in tree.items()}
    return tree.float()


@torch.no_grad()
def evaluate(
    trainer: Trainer, data: Iterable[Any], *, prefix: str = "val",
    forward: Callable[[nn.Module, Tensor], Tensor] | None = None,
) -> dict[str, float]:
    """Loss, top-1 accuracy, top-5 accuracy (more than five classes) and custom metrics over
    ``data``, in eval mode (what :meth:`Trainer.evaluate <trickbag.train.trainer.Trainer.evaluate>`
    returns).

    ``forward(model, x) -> outputs`` replaces ``model(x)``, e.g. test-time augmentation:
    ``trainer.evaluate(data, forward=lambda m, x: tta_logits(m, x, translate=1))``; by
    default the run's ``state.eval_forward`` (set by the ``tta`` trick), else ``model(x)``.

    Targets that are a dict ``{task: tensor}`` (a multi-task model) give each task
    ``<prefix>_<task>_acc`` (class-index targets) and ``<prefix>_<task>_loss`` (a criterion with
    ``task_losses``); ``<prefix>_acc`` is then the mean of the task accuracies.

    Args:
        trainer: the trainer whose model, device, precision, criterion and metrics are used.
        data: batches of ``(inputs, targets)`` (or mappings, by the trainer's ``batch_keys``).
        prefix: the metric names' prefix, ``"val"`` or ``"test"``.
        forward: ``forward(model, x) -> outputs``; default as above.

    Returns:
        ``{f"{prefix}_loss": ..., f"{prefix}_acc": ..., ...}``, means over the examples (summed
        over every rank under torchrun).
    """
    s = trainer._prepare()
    forward = forward or s.eval_forward or _plain_forward
    model = s.raw_model
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, device=trainer.device, dtype=torch.float64)  # loss, top1, top5, n
    classification, many_classes = False, False
    custom = {k: torch.zeros((), device=trainer.device, dtype=torch.float64) for k in trainer.extra_metrics}
    tasks: dict[str, Tensor] = {}  # "<task>_acc" / "<task>_loss" -> sum over examples
    try:
        for batch in data:
            x, y = trainer.unpack(batch)
            x, y = x.to(trainer.device, non_blocking=True), _to(y, trainer.device)
            if trainer.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with trainer.autocast():
                out = forward(model, x)
            n = x.shape[0]
            out = _float(out)
            sums[0] += s.eval_criterion(out, y).double() * n
            if isinstance(y, Mapping):  # multi-task: {task: targets}, metrics per task
                _task_metrics(s.eval_criterion, out, y, tasks)
            elif y.dim() == 1 and not y.is_floating_point():
                classification, many_classes = True, out.shape[1] > 5
                k = min(5, out.shape[1])
                top = out.topk(k, dim=1).indices
                hit = top == y[:, None]
                sums[1] += hit[:, 0].sum()
                sums[2] += hit.any(dim=1).sum()
            sums[3] += n
            for name, fn in trainer.extra_metrics.items():
                custom[name] += fn(out, y).double() * n
    finally:
        model.train(was_training)
    all_reduce_sum(sums)
    for t in custom.values():
        all_reduce_sum(t)
    loss_sum, top1, top5, n = sums.tolist()
    if n == 0:
        raise ValueError("evaluate() got no batches")
    result = {f"{prefix}_loss": loss_sum / n}
    if classification:
        result[f"{prefix}_acc"] = top1 / n
        if many_classes:
            result[f"{prefix}_top5"] = top5 / n
    result.update({f"{prefix}_{k}": v.item() / n for k, v in custom.items()})
    if tasks:
        for t in tasks.values():
            all_reduce_sum(t)
        per_task = {f"{prefix}_{k}": v.item() / n for k, v in tasks.items()}
        accs = [v for k, v in per_task.items() if k.endswith("_acc")]
        if accs:  # the mean over the classification tasks, for monitors that read val_acc
            result[f"{prefix}_acc"] = sum(accs) / len(accs)
        result.update(per_task)
    return result


def _task_metrics(criterion: Any, out: Any, y: Mapping[str, Tensor], sums: dict[str, Tensor]) -> None:
    """Accumulate each task's accuracy (class-index targets) and, when the criterion has
    ``task_losses`` (:class:`~trickbag.losses.MultiTaskLoss`), its loss, times the batch size."""
    n = next(iter(y.values())).shape[0]
    for task, yt in y.items():
        o = out.get(task) if isinstance(out, Mapping) else None
        if o is not None and yt.dim() == 1 and not yt.is_floating_point() and o.dim() == 2:
            hit = (o.argmax(1) == yt).sum().double()
            sums[f"{task}_acc"] = sums.get(f"{task}_acc", 0) + hit
    if hasattr(criterion, "task_losses"):
        for task, loss in criterion.task_losses(out, y).items():
            sums[f"{task}_loss"] = sums.get(f"{task}_loss", 0) + loss.detach().double() * n


@torch.no_grad()
def predict(trainer: Trainer, data: Iterable[Any], *, forward: Callable[[nn.Module, Tensor], Tensor] | None = None
            ) -> Tensor | dict[str, Tensor]:
    """The model's outputs on every batch of ``data`` (inputs, or ``(inputs, targets)``),
    concatenated on the CPU (a dict of them for a multi-task model); ``forward`` as in
    :func:`evaluate`. What :meth:`Trainer.predict <trickbag.train.trainer.Trainer.predict>` returns."""
    s = trainer._prepare()
    forward = forward or s.eval_forward or _plain_forward
    model = s.raw_model
    was_training = model.training
    model.eval()
    outs = []
    try:
        for batch in data:
            if isinstance(batch, Mapping):
                x = trainer.unpack(batch)[0]
            else:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
            with trainer.autocast():
                outs.append(_to(_float(forward(model, x.to(trainer.device))), torch.device("cpu")))
    finally:
        model.train(was_training)
    if outs and isinstance(outs[0], Mapping):  # a multi-task model: {task: outputs}
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    return torch.cat(outs)
