"""Adversarial perturbations: FGSM, I-FGSM and PGD on inputs; FGM and PGD on embeddings."""

from trickbag.adversarial.embedding import FGM, PGDEmbedding, adversarial_loss, embedding_parameters
from trickbag.adversarial.inputs import fgsm, ifgsm, pgd

__all__ = ["FGM", "PGDEmbedding", "adversarial_loss", "embedding_parameters", "fgsm", "ifgsm", "pgd"]
