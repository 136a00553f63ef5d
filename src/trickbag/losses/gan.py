"""The original GAN's losses on logits: the discriminator's cross-entropy and the generator's
non-saturating loss."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["discriminator_loss", "non_saturating_loss"]


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    r"""The GAN discriminator's binary cross-entropy on logits: real is 1, fake is 0.

    .. math:: L_D = -\mathbb{E}[\log \sigma(D(x))] - \mathbb{E}[\log(1 - \sigma(D(G(z))))]
              = \mathbb{E}[\mathrm{softplus}(-D(x))] + \mathbb{E}[\mathrm{softplus}(D(G(z)))]

    Example:
        >>> import torch
        >>> round(discriminator_loss(torch.tensor([0.0]), torch.tensor([0.0])).item(), 4)  # 2 log 2
        1.3863

    Reference: Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014.
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def non_saturating_loss(fake_logits: Tensor) -> Tensor:
    r"""The generator's non-saturating loss, :math:`-\mathbb{E}[\log \sigma(D(G(z)))]`.

    Minimising :math:`\log(1 - \sigma(D(G(z))))` (the minimax form) gives vanishing gradients
    while the discriminator easily rejects the samples, early in training; this form has the
    same fixed point and strong gradients there.

    Example:
        >>> import torch
        >>> round(non_saturating_loss(torch.tensor([0.0, 0.0])).item(), 4)  # log 2
        0.6931

    Reference: Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014 (section 3).
    """
    return F.softplus(-fake_logits).mean()
