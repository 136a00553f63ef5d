"""WGAN pieces against closed forms: a linear critic has gradient w everywhere."""

from __future__ import annotations

import pytest
import torch

from trickbag.losses import clip_weights_, critic_loss, generator_loss, gradient_penalty


def test_losses_are_mean_differences(gen):
    real, fake = torch.randn(10, generator=gen), torch.randn(7, generator=gen)
    torch.testing.assert_close(critic_loss(real, fake), fake.mean() - real.mean())
    torch.testing.assert_close(generator_loss(fake), -fake.mean())


def test_gradient_penalty_of_linear_critic_and_its_double_backward(gen):
    critic = torch.nn.Linear(5, 1)
    real, fake = torch.randn(8, 5, generator=gen), torch.randn(8, 5, generator=gen)
    gp = gradient_penalty(critic, real, fake, weight=10.0, generator=gen)
    w = critic.weight.detach().double()
    norm = w.norm()
    torch.testing.assert_close(gp.double(), 10 * (norm - 1) ** 2, rtol=1e-5, atol=1e-6)
    gp.backward()  # double backward: d/dw of 10 (|w| - 1)^2 = 20 (|w| - 1) w / |w|
    torch.testing.assert_close(critic.weight.grad.double(), 20 * (norm - 1) * w / norm, rtol=1e-5, atol=1e-6)


def test_gradient_penalty_on_images_with_a_nonlinear_critic_matches_the_definition():
    """4-D inputs and a nonlinear critic: the norm must be over every non-batch dimension and
    the interpolate must be eps * real + (1 - eps) * fake with one eps per example, which a 2-D,
    linear case cannot tell apart from other choices."""
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Tanh(), torch.nn.Flatten(),
                                 torch.nn.Linear(4 * 3 * 3, 1)).double()
    real = torch.randn(6, 2, 5, 5, dtype=torch.float64)
    fake = torch.randn(6, 2, 5, 5, dtype=torch.float64) * 3
    gp = gradient_penalty(critic, real, fake, weight=7.0, generator=torch.Generator().manual_seed(42))

    eps = torch.rand(6, 1, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(42))
    norms = []
    for i in range(6):  # one example at a time, by hand
        x = (eps[i] * real[i] + (1 - eps[i]) * fake[i]).unsqueeze(0).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).sum(), x)
        norms.append(g.flatten().norm())
    expected = 7.0 * torch.stack([(n - 1) ** 2 for n in norms]).mean()
    torch.testing.assert_close(gp, expected, rtol=1e-10, atol=1e-12)


def test_interpolates_lie_between_real_and_fake(gen):
    seen = []

    def critic(x):
        seen.append(x.detach())
        return x.sum(dim=1)

    real, fake = torch.zeros(6, 3), torch.ones(6, 3)
    gradient_penalty(critic, real, fake, generator=gen)
    x = seen[0]
    assert ((x >= 0) & (x <= 1)).all()
    assert (x == x[:, :1]).all()  # one epsilon per example


def test_clip_weights_clamps_every_parameter(gen):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
    clip_weights_(model, 0.05)
    for p in model.parameters():
        assert p.abs().max() <= 0.05


def test_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(torch.nn.Linear(2, 1), torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="c must be > 0"):
        clip_weights_(torch.nn.Linear(2, 1), 0.0)
