"""Ensembles of independently trained models: combined predictions and what they buy."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from trickbag._validate import check_choice, check_positive_int
from trickbag.calibration import accuracy, expected_calibration_error, fit_temperature, negative_log_likelihood
from trickbag.ensemble.members import Member, load_member

__all__ = ["EnsemblePrediction", "predict", "combine_logits", "member_logits", "evaluate", "bootstrap_interval",
           "fit_temperatures", "COMBINES"]

COMBINES = ("logits", "probs")


def combine_logits(logits: Sequence[Tensor], combine: str = "probs") -> Tensor:
    r"""The ensemble's class probabilities from its members' logits.

    ``"probs"``: the mean of the members' softmax, :math:`\bar p = \frac1M \sum_m \mathrm{softmax}(z_m)`
    (the classic model average); ``"logits"``: the softmax of the mean logits,
    :math:`\mathrm{softmax}(\frac1M \sum_m z_m)` (a normalised geometric mean of the members'
    probabilities, usually a little more confident).

    Example:
        >>> z = [torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])]
        >>> combine_logits(z, "probs").round(decimals=4), combine_logits(z, "logits").round(decimals=4)
        (tensor([[0.6904, 0.3096]]), tensor([[0.7311, 0.2689]]))
    """
    check_choice("combine", combine, COMBINES)
    if not logits:
        raise ValueError("an ensemble needs at least one member")
    shapes = {tuple(z.shape) for z in logits}
    if len(shapes) > 1:
        raise ValueError(f"members disagree on the output shape: {sorted(shapes)}")
    stacked = torch.stack([z.double() for z in logits])
    if combine == "probs":
        return stacked.softmax(-1).mean(0)
    return stacked.mean(0).softmax(-1)


def _batches(data: Any, batch_size: int) -> Iterable[tuple[Tensor, Tensor | None]]:
    """(inputs, targets or None) batches from a data set, a tensor, a pair or an iterable."""
    from trickbag.data import ArrayDataset, Splits

    if isinstance(data, Splits):
        raise ValueError("pass one split (splits.test), not the whole Splits")
    if isinstance(data, ArrayDataset):
        data = (data.inputs, data.targets)
    if isinstance(data, Tensor):
        data = (data, None)
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        x, y = data
        for i in range(0, x.shape[0], batch_size):
            yield x[i: i + batch_size], (y[i: i + batch_size] if y is not None else None)
        return
    for batch in data:
        if isinstance(batch, (tuple, list)):
            yield batch[0], batch[1] if len(batch) > 1 else None
        else:
            yield batch, None


@torch.no_grad()
def member_logits(member: Member | nn.Module, data: Any, *, batch_size: int = 512,
                  device: str | torch.device | None = None) -> tuple[Tensor, Tensor | None]:
    """One member's logits on ``data`` (float32, CPU) and the targets when the data has them.
    A :class:`Member` normalises raw inputs as its run did; a bare module sees them as given."""
    model = member.model if isinstance(member, Member) else member
    normalize = member.normalize if isinstance(member, Member) else None
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    outs, ys = [], []
    try:
        for x, y in _batches(data, batch_size):
            x = x.to(device)
            if normalize is not None:
                x = normalize(x)
            outs.append(model(x).float().cpu())
            if y is not None:
                ys.append(y.cpu())
    finally:
        model.train(was_training)
    if not outs:
        raise ValueError("the data holds no batches")
    return torch.cat(outs), (torch.cat(ys) if ys else None)


@dataclass
class EnsemblePrediction:
    """What :func:`predict` returns.

    Attributes:
        probs: ``(N, C)`` float64 ensemble probabilities.
        logits: each member's ``(N, C)`` logits, in member order.
        names: each member's name.
        targets: ``(N,)`` class indices when the data had them, else None.
        combine: ``"logits"`` or ``"probs"``.
    """

    probs: Tensor
    logits: list[Tensor]
    names: list[str]
    targets: Tensor | None
    combine: str

    def member_probs(self, i: int, temperature: float = 1.0) -> Tensor:
        return (self.logits[i].double() / temperature).softmax(-1)

    def ensemble_logits(self) -> Tensor:
        """Logits whose softmax is :attr:`probs` (the mean logits, or the log of the mean probabilities)."""
        if self.combine == "logits":
            return torch.stack([z.double() for z in self.logits]).mean(0)
        return self.probs.clamp_min(1e-300).log()


def _as_members(members: Sequence[Any], device: str | torch.device) -> list[tuple[str, Member | nn.Module]]:
    if isinstance(members, (str, Path, nn.Module, Member)):
        members = [members]
    out = []
    for i, m in enumerate(members):
        if isinstance(m, (str, Path)):
            member = load_member(m, device=device)
            out.append((member.name, member))
        elif isinstance(m, Member):
            out.append((m.name, m))
        elif isinstance(m, nn.Module):
            out.append((f"model {i}", m))
        else:
            raise ValueError(f"an ensemble member is an nn.Module, a Member or a run directory; got {type(m).__name__}")
    if not out:
        raise ValueError("an ensemble needs at least one member")
    return out


def predict(
    members: Sequence[nn.Module | Member | str | Path],
    data: Any,
    *,
    combine: str = "probs",
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> EnsemblePrediction:
    """Predict with an ensemble of independently trained models.

    Args:
        members: ``nn.Module`` s (they see ``data`` as given), :class:`Member` s, or run
            directories / weights files of ``trickbag train`` runs (rebuilt from their config;
            raw images are normalised as the run did).
        data: an ``ArrayDataset``, a tensor of inputs, an ``(inputs, targets)`` pair, or an
            iterable of batches (``x`` or ``(x, y)``).
        combine: ``"probs"`` (mean of softmax, default) or ``"logits"`` (softmax of mean logits);
            see :func:`combine_logits`.
        batch_size: for data sets and tensors.
        device: where run directories' models run.

    Returns:
        An :class:`EnsemblePrediction` (ensemble probabilities, each member's logits, targets).

    Example:
        >>> torch.manual_seed(0); nets = [torch.nn.Linear(4, 3) for _ in range(3)]
        <torch._C.Generator object at ...>
        >>> x = torch.randn(10, 4)
        >>> out = predict(nets, x, combine="probs")
        >>> out.probs.shape, bool(torch.allclose(out.probs, sum(n(x).softmax(1) for n in nets).double() / 3))
        (torch.Size([10, 3]), True)

    Reference: Lakshminarayanan, Pritzel, Blundell, "Simple and Scalable Predictive Uncertainty
    Estimation using Deep Ensembles", NeurIPS 2017.
    """
    check_choice("combine", combine, COMBINES)
    check_positive_int("batch_size", batch_size)
    named = _as_members(members, device)
    logits, targets = [], None
    for _, m in named:
        z, y = member_logits(m, data, batch_size=batch_size, device=device if not isinstance(m, nn.Module) else None)
        logits.append(z)
        targets = y if targets is None else targets
    return EnsemblePrediction(combine_logits(logits, combine), logits, [n for n, _ in named], targets, combine)


Metric = Callable[[Tensor, Tensor], Tensor]


def bootstrap_interval(probs: Tensor, targets: Tensor, metric: Metric, *, samples: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of ``metric(probs, targets)`` over resampled test
    examples: the uncertainty from the finite test set (not from training seeds).

    Example:
        >>> p = torch.tensor([[0.9, 0.1]] * 50 + [[0.2, 0.8]] * 50); y = torch.zeros(100, dtype=torch.long)
        >>> lo, hi = bootstrap_interval(p, y, accuracy, samples=200)
        >>> lo < 0.5 < hi
        True
    """
    check_positive_int("samples", samples)
    gen = torch.Generator().manual_seed(seed)
    n = targets.shape[0]
    values = []
    for _ in range(samples):
        idx = torch.randint(0, n, (n,), generator=gen)
        values.append(float(metric(probs[idx], targets[idx])))
    values.sort()
    lo = values[int(math.floor((1 - confidence) / 2 * samples))]
    hi = values[min(samples - 1, int(math.ceil((1 + confidence) / 2 * samples)) - 1)]
    return lo, hi


def evaluate(prediction: EnsemblePrediction, *, bins: int = 15, temperatures: dict[str, float] | None = None,
             intervals: int = 0) -> list[dict[str, Any]]:
    """Accuracy, NLL and ECE of every member and of the ensemble (with temperature-scaled rows
    for names in ``temperatures``; ``"ensemble"`` names the ensemble), optionally with
    ``intervals`` bootstrap samples for 95% intervals."""
    y = prediction.targets
    if y is None:
        raise ValueError("the data has no targets: accuracy, NLL and ECE need them")
    temperatures = temperatures or {}
    rows: list[tuple[str, Tensor]] = []
    for i, name in enumerate(prediction.names):
        rows.append((name, prediction.member_probs(i)))
        if name in temperatures:
            rows.append((f"{name} (T={temperatures[name]:.3g})", prediction.member_probs(i, temperatures[name])))
    label = f"ensemble ({len(prediction.names)}, {prediction.combine})"
    rows.append((label, prediction.probs))
    if "ensemble" in temperatures:
        t = temperatures["ensemble"]
        rows.append((f"{label} (T={t:.3g})", (prediction.ensemble_logits() / t).softmax(-1)))
    ece = lambda p, t: expected_calibration_error(p, t, bins)  # noqa: E731
    out = []
    for name, p in rows:
        row: dict[str, Any] = {"name": name, "acc": float(accuracy(p, y)), "nll": float(negative_log_likelihood(p, y)),
                               "ece": float(ece(p, y))}
        if intervals:
            for key, fn in (("acc", accuracy), ("nll", negative_log_likelihood), ("ece", ece)):
                row[f"{key}_ci"] = bootstrap_interval(p, y, fn, samples=intervals)
        out.append(row)
    return out


def fit_temperatures(prediction: EnsemblePrediction) -> dict[str, float]:
    """Temperatures of every member and of the ensemble fitted on ``prediction`` (held-out data)."""
    y = prediction.targets
    if y is None:
        raise ValueError("fitting temperatures needs targets")
    temps = {name: fit_temperature(z, y) for name, z in zip(prediction.names, prediction.logits)}
    temps["ensemble"] = fit_temperature(prediction.ensemble_logits(), y)
    return temps

