"""Adversarial perturbations and training: FGSM, fast FGSM, I-FGSM and PGD on inputs; FGM, PGD
and FreeLB on embeddings; robust accuracy; detection of catastrophic overfitting."""

from trickbag.adversarial.embedding import (
    EMBEDDING_METHODS,
    FGM,
    EmbeddingAdversary,
    PGDEmbedding,
    adversarial_loss,
    embedding_parameters,
    train_on_embeddings,
)
from trickbag.adversarial.inputs import fast_fgsm, fgsm, ifgsm, pgd
from trickbag.adversarial.overfitting import (
    CATASTROPHIC_OVERFITTING_FIX,
    CatastrophicOverfitting,
    detect_catastrophic_overfitting,
)
from trickbag.adversarial.robust import ATTACKS, make_attack, robust_accuracy

__all__ = [
    "ATTACKS",
    "CATASTROPHIC_OVERFITTING_FIX",
    "CatastrophicOverfitting",
    "EMBEDDING_METHODS",
    "EmbeddingAdversary",
    "FGM",
    "PGDEmbedding",
    "adversarial_loss",
    "detect_catastrophic_overfitting",
    "embedding_parameters",
    "fast_fgsm",
    "fgsm",
    "ifgsm",
    "make_attack",
    "pgd",
    "robust_accuracy",
    "train_on_embeddings",
]
