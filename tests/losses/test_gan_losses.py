"""The original GAN's losses against torch's binary cross-entropy on logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trickbag.losses import discriminator_loss, non_saturating_loss


def test_discriminator_loss_is_binary_cross_entropy_real_one_fake_zero(gen):
    real, fake = torch.randn(9, generator=gen) * 3, torch.randn(7, generator=gen) * 3
    expected = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    torch.testing.assert_close(discriminator_loss(real, fake), expected)


def test_non_saturating_loss_and_its_gradient_where_the_minimax_one_vanishes(gen):
    fake = torch.randn(11, generator=gen).double()
    torch.testing.assert_close(non_saturating_loss(fake), -torch.log(torch.sigmoid(fake)).mean())
    # a discriminator that rejects the samples confidently (logit -10): the minimax generator
    # loss log(1 - sigmoid) is flat there, the non-saturating one is not
    x = torch.full((4,), -10.0, dtype=torch.float64, requires_grad=True)
    (g_ns,) = torch.autograd.grad(non_saturating_loss(x), x)
    (g_mm,) = torch.autograd.grad(torch.log1p(-torch.sigmoid(x)).mean(), x)
    assert g_ns.abs().min() > 0.2 and g_mm.abs().max() < 1e-4
