"""Losses and loss transforms: focal, class-balanced, logit-adjusted, label smoothing, flooding, GAN and WGAN,
weight penalties."""

from trickbag.losses.flooding import Flooding, flood
from trickbag.losses.focal import FocalLoss, SigmoidFocalLoss, focal_loss, sigmoid_focal_loss
from trickbag.losses.imbalance import (
    CLASS_BALANCED_LOSSES,
    ClassBalancedLoss,
    LogitAdjustedLoss,
    adjust_logits,
    class_balanced_loss,
    class_balanced_weights,
    class_counts,
    class_priors,
    logit_adjusted_cross_entropy,
)
from trickbag.losses.multitask import (
    TASK_KINDS,
    MultiTaskLoss,
    parameter_distance,
    soft_sharing_penalty,
    uncertainty_weighted_loss,
    weighted_task_loss,
)
from trickbag.losses.gan import discriminator_loss, non_saturating_loss
from trickbag.losses.penalties import l1_penalty, l2_penalty, penalized_parameters
from trickbag.losses.smoothing import (
    LabelSmoothingCrossEntropy,
    cross_entropy_arguments,
    smooth_labels,
    soft_target_cross_entropy,
)
from trickbag.losses.wasserstein import clip_weights_, critic_loss, generator_loss, gradient_penalty

__all__ = [
    "TASK_KINDS",
    "MultiTaskLoss",
    "parameter_distance",
    "soft_sharing_penalty",
    "uncertainty_weighted_loss",
    "weighted_task_loss",
    "CLASS_BALANCED_LOSSES",
    "ClassBalancedLoss",
    "LogitAdjustedLoss",
    "adjust_logits",
    "class_balanced_loss",
    "class_balanced_weights",
    "class_counts",
    "class_priors",
    "logit_adjusted_cross_entropy",
    "FocalLoss",
    "Flooding",
    "LabelSmoothingCrossEntropy",
    "SigmoidFocalLoss",
    "clip_weights_",
    "critic_loss",
    "cross_entropy_arguments",
    "discriminator_loss",
    "flood",
    "focal_loss",
    "generator_loss",
    "gradient_penalty",
    "l1_penalty",
    "l2_penalty",
    "non_saturating_loss",
    "penalized_parameters",
    "sigmoid_focal_loss",
    "smooth_labels",
    "soft_target_cross_entropy",
]
