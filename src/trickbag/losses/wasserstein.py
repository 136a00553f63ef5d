"""Wasserstein GAN losses, gradient penalty (WGAN-GP) and weight clipping."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trickbag._validate import check_nonnegative, check_positive

__all__ = ["critic_loss", "generator_loss", "gradient_penalty", "clip_weights_"]


def critic_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    r"""The WGAN critic's loss, :math:`\mathbb{E}[D(\tilde x)] - \mathbb{E}[D(x)]`.

    Minimising it maximises the critic's estimate of the Wasserstein-1 distance.

    Example:
        >>> import torch
        >>> critic_loss(torch.tensor([2.0, 4.0]), torch.tensor([1.0]))
        tensor(-2.)

    Reference: Arjovsky, Chintala, Bottou, "Wasserstein GAN", ICML 2017.
    """
    return fake_scores.mean() - real_scores.mean()


def generator_loss(fake_scores: Tensor) -> Tensor:
    r"""The WGAN generator's loss, :math:`-\mathbb{E}[D(G(z))]`.

    Example:
        >>> import torch
        >>> generator_loss(torch.tensor([1.0, 3.0]))
        tensor(-2.)
    """
    return -fake_scores.mean()


def gradient_penalty(
    critic: nn.Module | callable,
    real: Tensor,
    fake: Tensor,
    *,
    weight: float = 10.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""WGAN-GP's two-sided gradient penalty on random interpolates.

    .. math::
        \lambda\, \mathbb{E}_{\hat x}\big[(\lVert \nabla_{\hat x} D(\hat x) \rVert_2 - 1)^2\big],
        \quad \hat x = \epsilon x + (1 - \epsilon)\tilde x,\ \epsilon \sim U[0, 1]

    The gradient is taken with ``create_graph=True`` so the penalty itself back-propagates into
    the critic (a double backward).

    Args:
        critic: maps a batch to one score per example.
        real, fake: batches of the same shape; ``fake`` is detached.
        weight: :math:`\lambda`, default 10.
        generator: optional ``torch.Generator`` for the interpolation weights.

    Returns:
        The scalar penalty.

    Example:
        >>> import torch
        >>> critic = torch.nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad(): critic.weight.copy_(torch.tensor([[3.0, 4.0]]))  # |w| = 5
        Parameter containing:
        tensor([[3., 4.]], requires_grad=True)
        >>> gradient_penalty(critic, torch.randn(4, 2), torch.randn(4, 2))  # 10 * (5 - 1)^2
        tensor(160., grad_fn=<MulBackward0>)

    Reference: Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville, "Improved Training of
    Wasserstein GANs", NeurIPS 2017.
    """
    check_nonnegative("weight", weight)
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have the same shape, got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}"
        )
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, device=real.device, dtype=real.dtype, generator=generator)
    interp = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(interp)
    (grads,) = torch.autograd.grad(scores.sum(), interp, create_graph=True)
    norms = grads.flatten(1).norm(2, dim=1)
    return weight * ((norms - 1) ** 2).mean()


@torch.no_grad()
def clip_weights_(module: nn.Module, c: float) -> nn.Module:
    r"""Clamp every parameter of ``module`` to ``[-c, c]`` in place (the original WGAN's
    Lipschitz constraint), in one foreach pass.

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(3, 1)
        >>> _ = clip_weights_(lin, 0.01)
        >>> bool(lin.weight.abs().max() <= 0.01)
        True

    Reference: Arjovsky et al., "Wasserstein GAN", ICML 2017 (c = 0.01 there).
    """
    check_positive("c", c)
    params = [p for p in module.parameters()]
    if params:
        torch._foreach_clamp_min_(params, -c)
        torch._foreach_clamp_max_(params, c)
    return module
