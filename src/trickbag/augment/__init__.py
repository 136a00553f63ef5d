"""Batched, device-side augmentation: every op takes (N, C, H, W) and a keyword ``generator``."""

from trickbag.augment.compose import (
    AUGMENTATIONS,
    AlternatingFlip,
    Augmentation,
    Compose,
    Cutout,
    GaussianNoise,
    HFlip,
    RandomCrop,
    Rotate,
    Scale,
    Translate,
    VFlip,
    build_augment,
)
from trickbag.augment.erase import cutout, cutout_mask, gaussian_noise
from trickbag.augment.geometric import alternating_flip, hflip, random_crop, rotate, rotate_by, scale, translate, vflip
from trickbag.augment.mixing import Mixed, cutmix_batch, mix_targets, mixup_batch
from trickbag.augment.normalize import Normalizer, fit_normalizer
from trickbag.augment.tta import TTA, tta_logits, tta_views

__all__ = [
    "AUGMENTATIONS",
    "AlternatingFlip",
    "Augmentation",
    "Compose",
    "Cutout",
    "GaussianNoise",
    "HFlip",
    "Mixed",
    "Normalizer",
    "RandomCrop",
    "Rotate",
    "Scale",
    "TTA",
    "Translate",
    "VFlip",
    "alternating_flip",
    "build_augment",
    "cutmix_batch",
    "cutout",
    "cutout_mask",
    "fit_normalizer",
    "gaussian_noise",
    "hflip",
    "mix_targets",
    "mixup_batch",
    "random_crop",
    "rotate",
    "rotate_by",
    "scale",
    "translate",
    "tta_logits",
    "tta_views",
    "vflip",
]
