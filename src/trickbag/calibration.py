"""Calibration: how far predicted confidence is from accuracy (ECE, reliability bins, NLL),
and temperature scaling fitted on held-out data (Guo et al. 2017)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trickbag._validate import check_positive, check_positive_int

__all__ = [
    "CalibrationBins",
    "calibration_bins",
    "expected_calibration_error",
    "negative_log_likelihood",
    "accuracy",
    "fit_temperature",
    "TemperatureScaled",
]


def _check(probs: Tensor, targets: Tensor) -> None:
    if probs.dim() != 2:
        raise ValueError(f"probs must be (N, C) class probabilities, got shape {tuple(probs.shape)}")
    if targets.shape != probs.shape[:1] or targets.is_floating_point():
        raise ValueError(f"targets must be (N,) = ({probs.shape[0]},) class indices, got shape "
                         f"{tuple(targets.shape)} of {targets.dtype}")
    if probs.shape[0] == 0:
        raise ValueError("probs holds no examples")


@dataclass(frozen=True)
class CalibrationBins:
    """Equal-width confidence bins: bin ``m`` holds the examples whose top-class confidence lies
    in ``(edges[m], edges[m + 1]]``. ``confidence`` and ``accuracy`` are the bin means (0 for
    empty bins), ``counts`` the examples in each."""

    edges: Tensor
    counts: Tensor
    confidence: Tensor
    accuracy: Tensor


def calibration_bins(probs: Tensor, targets: Tensor, bins: int = 15) -> CalibrationBins:
    """Bin the top-class confidences into ``bins`` equal-width bins over ``[0, 1]``
    (right-closed, so a confidence of exactly ``m / bins`` falls in bin ``m - 1``).

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]]); y = torch.tensor([0, 1, 1])
        >>> b = calibration_bins(p, y, bins=2)
        >>> b.counts.tolist(), b.confidence.round(decimals=4).tolist(), b.accuracy.round(decimals=4).tolist()
        ([0, 3], [0.0, 0.7333], [0.0, 0.6667])
    """
    check_positive_int("bins", bins)
    _check(probs, targets)
    p = probs.detach().double().cpu()
    conf, pred = p.max(dim=1)
    correct = (pred == targets.cpu()).double()
    edges = torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64)
    index = torch.bucketize(conf, edges[1:-1], right=False)  # (lo, hi]
    counts = torch.bincount(index, minlength=bins)
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, conf)
    acc_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct)
    safe = counts.clamp_min(1).double()
    return CalibrationBins(edges, counts, conf_sum / safe, acc_sum / safe)


def expected_calibration_error(probs: Tensor, targets: Tensor, bins: int = 15) -> Tensor:
    r"""Expected calibration error over equal-width bins of the top-class confidence.

    .. math:: \mathrm{ECE} = \sum_{m=1}^{M} \frac{|B_m|}{N}\,\bigl|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)\bigr|

    with :math:`B_m` the examples whose confidence :math:`\max_c p_c` lies in
    :math:`((m-1)/M, m/M]`. Computed in float64.

    Args:
        probs: ``(N, C)`` predicted class probabilities (rows summing to one).
        targets: ``(N,)`` class indices.
        bins: ``M``, the number of bins. Default 15 (Guo et al.).

    Returns:
        A 0-d float64 tensor in ``[0, 1]``.

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]]); y = torch.tensor([0, 1, 1])
        >>> round(expected_calibration_error(p, y, bins=2).item(), 4)  # |2/3 - 0.7333|
        0.0667

    Reference: Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks",
    ICML 2017; Naeini, Cooper, Hauskrecht, AAAI 2015.
    """
    b = calibration_bins(probs, targets, bins)
    return ((b.counts.double() / b.counts.sum()) * (b.accuracy - b.confidence).abs()).sum()


def negative_log_likelihood(probs: Tensor, targets: Tensor, *, eps: float = 1e-12) -> Tensor:
    """Mean ``-log p_y`` of class probabilities (clamped at ``eps``), in float64.

    Example:
        >>> round(negative_log_likelihood(torch.tensor([[0.5, 0.5], [0.9, 0.1]]), torch.tensor([0, 0])).item(), 4)
        0.3993
    """
    _check(probs, targets)
    p = probs.detach().double().cpu().gather(1, targets.cpu().long()[:, None]).squeeze(1)
    return -(p.clamp_min(eps).log()).mean()


def accuracy(probs: Tensor, targets: Tensor) -> Tensor:
    """Top-1 accuracy of scores or probabilities, as a 0-d float64 tensor.

    Example:
        >>> accuracy(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0])).item()
        0.5
    """
    _check(probs, targets)
    return (probs.detach().cpu().argmax(1) == targets.cpu()).double().mean()


def fit_temperature(logits: Tensor, targets: Tensor, *, max_iter: int = 200) -> float:
    r"""The temperature :math:`T > 0` minimising the NLL of ``softmax(logits / T)`` on held-out
    data (L-BFGS on :math:`\log T`, in float64).

    Fit it on the validation split, never on the test split: ``T > 1`` softens an
    over-confident model; the argmax, hence accuracy, never changes.

    Args:
        logits: ``(N, C)`` held-out logits.
        targets: ``(N,)`` class indices.
        max_iter: L-BFGS iterations. Default 200.

    Returns:
        ``T`` as a float.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> z = 2 * torch.randn(5000, 5, generator=g)
        >>> y = torch.multinomial(z.softmax(1), 1, generator=g).squeeze(1)  # labels drawn from softmax(z)
        >>> 2.8 < fit_temperature(3 * z, y) < 3.2  # logits 3x too sharp: T close to 3
        True

    Reference: Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks",
    ICML 2017.
    """
    check_positive_int("max_iter", max_iter)
    _check(logits, targets)
    z, y = logits.detach().double().cpu(), targets.cpu().long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


class TemperatureScaled(nn.Module):
    """A model whose logits are divided by a fixed temperature (a buffer, saved with the model).

    Example:
        >>> net = TemperatureScaled(torch.nn.Linear(3, 2), 2.0)
        >>> x = torch.randn(4, 3)
        >>> bool(torch.allclose(net(x), net.model(x) / 2))
        True
    """

    temperature: Tensor

    def __init__(self, model: nn.Module, temperature: float = 1.0):
        super().__init__()
        check_positive("temperature", temperature)
        self.model = model
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) / self.temperature

    def extra_repr(self) -> str:
        return f"temperature={self.temperature.item():.4g}"
