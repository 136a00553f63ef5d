"""Label cleaning with an ensemble (`trickbag clean`): k-fold out-of-sample probabilities
from several model types, confident learning and an agreement rule, a cleaned data-set view,
and which unlabelled examples to label next."""

from trickbag.clean.runner import RULES, kfold, out_of_sample_probs, parse_models, precision_recall, rank, run
from trickbag.clean.scores import (
    FILTERS,
    RANKINGS,
    agreement_issues,
    confident_joint,
    confident_thresholds,
    find_label_issues,
    label_quality,
    rank_unlabeled,
)

__all__ = [
    "FILTERS",
    "RANKINGS",
    "RULES",
    "agreement_issues",
    "confident_joint",
    "confident_thresholds",
    "find_label_issues",
    "kfold",
    "label_quality",
    "out_of_sample_probs",
    "parse_models",
    "precision_recall",
    "rank",
    "rank_unlabeled",
    "run",
]
