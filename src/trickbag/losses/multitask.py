"""Multi-task losses: fixed task weights, learned uncertainty weighting (Kendall et al. 2018),
and the soft-sharing penalty between task models' parameters."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trickbag._validate import check_choice, check_nonnegative

__all__ = ["weighted_task_loss", "uncertainty_weighted_loss", "MultiTaskLoss", "parameter_distance",
           "soft_sharing_penalty", "TASK_KINDS"]

#: ``classification``: the loss is a negative log-likelihood of a softmax (scale 1/sigma^2);
#: ``regression``: of a Gaussian (scale 1/(2 sigma^2)).
TASK_KINDS = ("classification", "regression")


def _check_tasks(losses: Mapping[str, Tensor], other: Mapping[str, object], what: str) -> None:
    if not losses:
        raise ValueError("give at least one task's loss")
    missing = sorted(set(losses) - set(other))
    if missing:
        raise ValueError(f"{what} has no entry for tasks {missing}; it has {sorted(other)}")


def weighted_task_loss(losses: Mapping[str, Tensor], weights: Mapping[str, float] | None = None) -> Tensor:
    r"""Fixed-weight multi-task loss :math:`\sum_t w_t L_t` (every weight 1 by default).

    Example:
        >>> weighted_task_loss({"a": torch.tensor(2.0), "b": torch.tensor(4.0)}, {"a": 1.0, "b": 0.5}).item()
        4.0
    """
    if weights is None:
        weights = {t: 1.0 for t in losses}
    _check_tasks(losses, weights, "weights")
    for t, w in weights.items():
        check_nonnegative(f"weight of task {t!r}", w)
    return sum(weights[t] * loss for t, loss in losses.items())


def uncertainty_weighted_loss(losses: Mapping[str, Tensor], log_vars: Mapping[str, Tensor],
                              kinds: Mapping[str, str] | None = None) -> Tensor:
    r"""Multi-task loss weighted by learned homoscedastic uncertainty.

    With :math:`s_t = \log \sigma_t^2` learned per task:

    .. math::
        L = \sum_t c_t\, e^{-s_t} L_t + \tfrac12 s_t, \qquad
        c_t = 1 \text{ (classification)},\ \tfrac12 \text{ (regression)}

    i.e. :math:`\frac{1}{\sigma^2} L_t + \log \sigma` for a softmax likelihood and
    :math:`\frac{1}{2\sigma^2} L_t + \log \sigma` for a Gaussian one (Kendall et al., eqs. 7
    and 10). A task with a large loss learns a large :math:`\sigma_t` and so a small weight;
    the :math:`\log \sigma` term stops every weight from going to zero.

    Args:
        losses: each task's loss (a scalar tensor).
        log_vars: each task's :math:`s_t` (a scalar parameter).
        kinds: each task's kind in :data:`TASK_KINDS`; default classification.

    Returns:
        The scalar loss.

    Example:
        >>> s = {"a": torch.tensor(0.0), "b": torch.log(torch.tensor(4.0))}
        >>> L = {"a": torch.tensor(1.0), "b": torch.tensor(2.0)}
        >>> round(uncertainty_weighted_loss(L, s).item(), 4)  # 1/1 * 1 + 0 + 1/4 * 2 + log 2
        2.1931

    Reference: Kendall, Gal, Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for
    Scene Geometry and Semantics", CVPR 2018.
    """
    _check_tasks(losses, log_vars, "log_vars")
    kinds = kinds or {}
    total = 0.0
    for t, loss in losses.items():
        kind = check_choice(f"kind of task {t!r}", kinds.get(t, "classification"), TASK_KINDS)
        scale = 1.0 if kind == "classification" else 0.5
        s = log_vars[t]
        total = total + scale * torch.exp(-s) * loss + 0.5 * s
    return total


def _default_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """MSE for float targets; cross-entropy for class indices, averaged over the labelled
    examples (targets of -100 are missing labels), and 0 for a batch with none."""
    if targets.is_floating_point():
        return F.mse_loss(outputs, targets)
    labelled = (targets != -100).sum()
    return F.cross_entropy(outputs, targets, reduction="sum") / labelled.clamp_min(1)


class MultiTaskLoss(nn.Module):
    """The loss of a multi-task model: ``outputs`` and ``targets`` are dicts ``{task: tensor}``.

    Each task has its own loss (cross-entropy for integer targets, where -100 marks a missing
    label, MSE for float ones, unless ``losses`` says otherwise); ``weighting="fixed"`` sums them with ``weights``
    (:func:`weighted_task_loss`), ``"uncertainty"`` learns one log-variance per task
    (:func:`uncertainty_weighted_loss`; its parameters ``log_vars`` must reach the optimizer:
    give the loss to :class:`~trickbag.multitask.MultiTask` (``loss=``), which registers it, or
    add them to your optimizer). :meth:`task_losses` gives each task's loss, which the Trainer
    reports as ``val_<task>_loss``.

    Args:
        tasks: task names, or ``{task: loss_fn}``.
        weights: fixed weights per task (default 1 each); only with ``weighting="fixed"``.
        weighting: ``"fixed"`` or ``"uncertainty"``.
        kinds: ``{task: "classification" | "regression"}`` for uncertainty weighting.

    Example:
        >>> crit = MultiTaskLoss(["fine", "coarse"], weighting="uncertainty")
        >>> out = {"fine": torch.randn(4, 10), "coarse": torch.randn(4, 4)}
        >>> y = {"fine": torch.randint(0, 10, (4,)), "coarse": torch.randint(0, 4, (4,))}
        >>> crit(out, y).dim(), sorted(crit.log_vars)
        (0, ['coarse', 'fine'])
    """

    def __init__(self, tasks: Sequence[str] | Mapping[str, Callable[[Tensor, Tensor], Tensor]], *,
                 weights: Mapping[str, float] | None = None, weighting: str = "fixed",
                 kinds: Mapping[str, str] | None = None):
        super().__init__()
        check_choice("weighting", weighting, ("fixed", "uncertainty"))
        fns = dict(tasks) if isinstance(tasks, Mapping) else {t: _default_loss for t in tasks}
        if not fns:
            raise ValueError("MultiTaskLoss needs at least one task")
        if weights is not None and weighting != "fixed":
            raise ValueError("weights are fixed task weights; uncertainty weighting learns them (drop weights=)")
        if weights is not None:
            _check_tasks(fns, weights, "weights")
        self.fns, self.weighting, self.kinds = fns, weighting, dict(kinds or {})
        self.weights = dict(weights) if weights is not None else None
        if weighting == "uncertainty":
            self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.zeros(())) for t in fns})

    @property
    def tasks(self) -> list[str]:
        return list(self.fns)

    def task_losses(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if not isinstance(outputs, Mapping) or not isinstance(targets, Mapping):
            raise ValueError(f"a multi-task loss takes dicts {{task: tensor}}, got {type(outputs).__name__} outputs "
                             f"and {type(targets).__name__} targets")
        _check_tasks(self.fns, outputs, "the outputs")
        _check_tasks(self.fns, targets, "the targets")
        return {t: fn(outputs[t], targets[t]) for t, fn in self.fns.items()}

    def forward(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        losses = self.task_losses(outputs, targets)
        if self.weighting == "uncertainty":
            return uncertainty_weighted_loss(losses, dict(self.log_vars.items()), self.kinds)
        return weighted_task_loss(losses, self.weights)

    def task_weights(self) -> dict[str, float]:
        """The effective weight of each task: fixed, or :math:`c_t e^{-s_t}` when learned."""
        if self.weighting == "fixed":
            return dict(self.weights or {t: 1.0 for t in self.fns})
        return {t: (1.0 if self.kinds.get(t, "classification") == "classification" else 0.5) * float(torch.exp(-s.detach()))
                for t, s in self.log_vars.items()}

    def extra_repr(self) -> str:
        return f"tasks={self.tasks}, weighting={self.weighting!r}"


def parameter_distance(a: nn.Module, b: nn.Module, *, prefixes: Sequence[str] | None = None) -> Tensor:
    r"""Squared L2 distance between the parameters two models share:
    :math:`\sum_k \lVert \theta^a_k - \theta^b_k \rVert^2` over parameters of the same name and
    shape (optionally only names starting with one of ``prefixes``).

    Example:
        >>> import copy
        >>> a = torch.nn.Linear(2, 1); b = copy.deepcopy(a)
        >>> with torch.no_grad(): _ = b.weight.add_(1.0)
        >>> parameter_distance(a, b).item()  # two weights apart by 1, equal biases
        2.0
    """
    pb = dict(b.named_parameters())
    total = None
    for name, p in a.named_parameters():
        q = pb.get(name)
        if q is None or q.shape != p.shape:
            continue
        if prefixes is not None and not any(name.startswith(pre) for pre in prefixes):
            continue
        d = (p - q).pow(2).sum()
        total = d if total is None else total + d
    if total is None:
        raise ValueError("the models share no parameter of the same name and shape"
                         + (f" under prefixes {list(prefixes)}" if prefixes is not None else ""))
    return total


def soft_sharing_penalty(models: Sequence[nn.Module], coefficient: float, *,
                         prefixes: Sequence[str] | None = None) -> Tensor:
    r"""Soft parameter sharing: :math:`\lambda \sum_{i<j} \lVert \theta_i - \theta_j \rVert^2`
    over the parameters the task models share (:func:`parameter_distance`), added to the sum of
    the task losses so that each task keeps its own model but the models stay close.

    Example:
        >>> a, b = torch.nn.Linear(2, 1, bias=False), torch.nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad(): _ = a.weight.fill_(1.0); _ = b.weight.fill_(0.0)
        >>> round(soft_sharing_penalty([a, b], 0.1).item(), 6)  # 0.1 * (1 + 1)
        0.2

    Reference: Duong, Cohn, Bird, Cook, "Low Resource Dependency Parsing: Cross-lingual
    Parameter Sharing in a Neural Network Parser", ACL 2015; Ruder, "An Overview of Multi-Task
    Learning in Deep Neural Networks", arXiv:1706.05098, 2017.
    """
    check_nonnegative("coefficient", coefficient)
    if len(models) < 2:
        raise ValueError(f"soft sharing needs at least two task models, got {len(models)}")
    total = None
    for i in range(len(models)):
        for j in range(i + 1, len(models)):
            d = parameter_distance(models[i], models[j], prefixes=prefixes)
            total = d if total is None else total + d
    return coefficient * total
