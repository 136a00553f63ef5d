"""Label-error scores from out-of-sample predicted probabilities: confident learning
(Northcutt et al. 2021), an agreement rule over model types, and which unlabelled examples to
label next (least confidence, margin, disagreement)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from trickbag._validate import check_choice, check_positive_int, check_range

__all__ = ["confident_thresholds", "confident_joint", "find_label_issues", "agreement_issues", "label_quality",
           "rank_unlabeled", "FILTERS", "RANKINGS"]

FILTERS = ("prune_by_noise_rate", "confident_joint", "argmax")
RANKINGS = ("least_confidence", "margin", "disagreement")


def _check(probs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    if probs.dim() != 2:
        raise ValueError(f"probs must be (N, C) out-of-sample class probabilities, got shape {tuple(probs.shape)}")
    if labels.shape != probs.shape[:1] or labels.is_floating_point():
        raise ValueError(f"labels must be (N,) = ({probs.shape[0]},) class indices, got shape {tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must be in 0..{probs.shape[1] - 1}, got {labels.min().item()}..{labels.max().item()}")
    return probs.detach().double().cpu(), labels.cpu().long()


def confident_thresholds(probs: Tensor, labels: Tensor) -> Tensor:
    r"""Per-class thresholds :math:`t_j`: the mean predicted probability of class ``j`` over the
    examples labelled ``j`` (the model's expected self-confidence for that class); ``inf`` for a
    class nobody is labelled with.

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8]]); y = torch.tensor([0, 0, 1])
        >>> confident_thresholds(p, y).round(decimals=4).tolist()
        [0.8, 0.8]
    """
    p, y = _check(probs, labels)
    c = p.shape[1]
    sums = torch.zeros(c, dtype=torch.float64).index_add_(0, y, p.gather(1, y[:, None]).squeeze(1))
    counts = torch.bincount(y, minlength=c).double()
    return torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, float("inf")))


def confident_joint(probs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    r"""The confident joint :math:`C_{\tilde y, y^*}` and each example's confident class.

    Example ``x`` labelled :math:`\tilde y` counts in row :math:`\tilde y`, column
    :math:`y^* = \arg\max_{j:\ \hat p_j(x) \ge t_j} \hat p_j(x)`; examples above no threshold
    count nowhere (confident class ``-1``).

    Returns:
        ``(C, C)`` int64 counts, and ``(N,)`` confident classes.

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.1, 0.9]]); y = torch.tensor([0, 0, 1, 0])
        >>> joint, cls = confident_joint(p, y)
        >>> joint.tolist(), cls.tolist()  # thresholds 0.5667 and 0.8: the last one looks like a 1
        ([[2, 1], [0, 1]], [0, 0, 1, 1])

    Reference: Northcutt, Jiang, Chuang, "Confident Learning: Estimating Uncertainty in Dataset
    Labels", JAIR 2021.
    """
    p, y = _check(probs, labels)
    t = confident_thresholds(p, y)
    above = p >= t[None, :] - 1e-12
    masked = torch.where(above, p, torch.full_like(p, -1.0))
    cls = masked.argmax(1)
    cls = torch.where(above.any(1), cls, torch.full_like(cls, -1))
    c = p.shape[1]
    ok = cls >= 0
    joint = torch.bincount(y[ok] * c + cls[ok], minlength=c * c).view(c, c)
    return joint, cls


def label_quality(probs: Tensor, labels: Tensor, method: str = "self_confidence") -> Tensor:
    r"""Per-example label quality in ``[0, 1]``, low for likely errors: ``"self_confidence"``
    :math:`\hat p_{\tilde y}(x)`, or ``"normalized_margin"``
    :math:`(\hat p_{\tilde y} - \max_{j \ne \tilde y} \hat p_j + 1) / 2`.

    Example:
        >>> label_quality(torch.tensor([[0.7, 0.3]]), torch.tensor([1]), "normalized_margin").round(decimals=4).tolist()
        [0.3]
    """
    check_choice("method", method, ("self_confidence", "normalized_margin"))
    p, y = _check(probs, labels)
    given = p.gather(1, y[:, None]).squeeze(1)
    if method == "self_confidence":
        return given
    other = p.scatter(1, y[:, None], -1.0).max(1).values
    return (given - other + 1) / 2


def find_label_issues(probs: Tensor, labels: Tensor, *, filter_by: str = "prune_by_noise_rate") -> Tensor:
    r"""Flag likely label errors from out-of-sample probabilities with confident learning.

    ``"confident_joint"``: the examples counted off the diagonal of the confident joint
    (:func:`confident_joint`). ``"prune_by_noise_rate"`` (the paper's default, as cleanlab's):
    calibrate the joint so row :math:`i` sums to the examples labelled :math:`i`, then for each
    off-diagonal cell :math:`(i, j)` flag the :math:`\tilde C_{ij}` examples labelled :math:`i`
    with the largest margin :math:`\hat p_j - \hat p_i` (among those whose argmax is not
    :math:`i`). ``"argmax"``: the prediction disagrees with the label (the naive baseline).

    Args:
        probs: ``(N, C)`` out-of-sample probabilities (k-fold: no model saw the example).
        labels: ``(N,)`` given labels.
        filter_by: one of :data:`FILTERS`.

    Returns:
        ``(N,)`` bool mask of flagged examples.

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.15, 0.85]])
        >>> find_label_issues(p, torch.tensor([0, 0, 1, 1, 0])).tolist()
        [False, False, False, False, True]

    Reference: Northcutt, Jiang, Chuang, "Confident Learning: Estimating Uncertainty in Dataset
    Labels", JAIR 2021.
    """
    check_choice("filter_by", filter_by, FILTERS)
    p, y = _check(probs, labels)
    n, c = p.shape
    pred = p.argmax(1)
    if filter_by == "argmax":
        return pred != y
    joint, cls = confident_joint(p, y)
    if filter_by == "confident_joint":
        return (cls >= 0) & (cls != y)
    counts = torch.bincount(y, minlength=c).double()
    rows = joint.double().sum(1, keepdim=True)
    calibrated = torch.where(rows > 0, joint.double() / rows.clamp_min(1) * counts[:, None], torch.zeros_like(rows))
    calibrated = calibrated / calibrated.sum().clamp_min(1e-12) * n  # the joint sums to n
    flagged = torch.zeros(n, dtype=torch.bool)
    for i in range(c):
        for j in range(c):
            k = int(round(float(calibrated[i, j])))
            if i == j or k == 0:
                continue
            idx = torch.nonzero((y == i) & (pred != i)).flatten()
            if idx.numel() == 0:
                continue
            margin = p[idx, j] - p[idx, i]
            flagged[idx[margin.argsort(descending=True)[:k]]] = True
    return flagged


def agreement_issues(member_probs: Sequence[Tensor], labels: Tensor, *, min_agree: int | None = None,
                     min_confidence: float = 0.5) -> tuple[Tensor, Tensor]:
    """Flag an example when at least ``min_agree`` of the models (default all) predict the same
    class other than its label, and the models' mean probability of that class is at least
    ``min_confidence``: the "several models agree it is mislabelled" rule.

    Returns:
        ``(N,)`` bool flags and ``(N,)`` the agreed class (``-1`` where none).

    Example:
        >>> a = torch.tensor([[0.9, 0.1], [0.2, 0.8]]); b = torch.tensor([[0.8, 0.2], [0.4, 0.6]])
        >>> flags, cls = agreement_issues([a, b], torch.tensor([0, 0]))
        >>> flags.tolist(), cls.tolist()
        ([False, True], [-1, 1])
    """
    if not member_probs:
        raise ValueError("agreement_issues needs at least one model's probabilities")
    m = len(member_probs)
    min_agree = m if min_agree is None else min_agree
    check_positive_int("min_agree", min_agree)
    if min_agree > m:
        raise ValueError(f"min_agree must be at most the number of models ({m}), got {min_agree}")
    check_range("min_confidence", min_confidence, 0.0, 1.0)
    stacked = torch.stack([_check(q, labels)[0] for q in member_probs])
    y = labels.cpu().long()
    votes = torch.nn.functional.one_hot(stacked.argmax(2), stacked.shape[2]).sum(0)  # (N, C)
    votes.scatter_(1, y[:, None], 0)  # votes for the given label do not count
    top_votes, cls = votes.max(1)
    mean_p = stacked.mean(0).gather(1, cls[:, None]).squeeze(1)
    flags = (top_votes >= min_agree) & (mean_p >= min_confidence)
    return flags, torch.where(flags, cls, torch.full_like(cls, -1))


def rank_unlabeled(member_probs: Sequence[Tensor], method: str = "least_confidence") -> Tensor:
    r"""Scores of unlabelled examples, higher = label it sooner (uncertainty sampling).

    With :math:`\bar p` the models' mean probabilities: ``"least_confidence"``
    :math:`1 - \max_c \bar p_c`; ``"margin"`` :math:`1 - (\bar p_{(1)} - \bar p_{(2)})` (the gap
    between the two likeliest classes, turned so a small gap scores high); ``"disagreement"``
    (query by committee) the mean KL divergence of each model from the mean,
    :math:`\frac1M \sum_m \mathrm{KL}(p_m \,\|\, \bar p)`, 0 when the models agree.

    Example:
        >>> sure, torn = torch.tensor([[0.98, 0.02]]), torch.tensor([[0.55, 0.45]])
        >>> s = rank_unlabeled([torch.cat([sure, torn])], "margin")
        >>> bool(s[1] > s[0])
        True

    Reference: Settles, "Active Learning Literature Survey", 2009; Seung, Opper, Sompolinsky,
    "Query by Committee", COLT 1992.
    """
    check_choice("method", method, RANKINGS)
    if not member_probs:
        raise ValueError("rank_unlabeled needs at least one model's probabilities")
    stacked = torch.stack([q.detach().double().cpu() for q in member_probs])
    mean = stacked.mean(0)
    if method == "least_confidence":
        return 1 - mean.max(1).values
    if method == "margin":
        top2 = mean.topk(min(2, mean.shape[1]), dim=1).values
        gap = top2[:, 0] - (top2[:, 1] if top2.shape[1] > 1 else 0)
        return 1 - gap
    if len(member_probs) < 2:
        raise ValueError("disagreement needs at least two models")
    eps = 1e-12
    kl = (stacked * ((stacked + eps).log() - (mean[None] + eps).log())).sum(2)
    return kl.mean(0)
