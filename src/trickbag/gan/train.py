"""A small GAN training loop: the non-saturating GAN, WGAN with weight clipping, WGAN-GP."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from trickbag._validate import check_nonnegative, check_positive, check_positive_int, unknown
from trickbag.losses import (
    clip_weights_,
    critic_loss,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    non_saturating_loss,
)

__all__ = ["GanMethod", "METHODS", "method", "train_gan"]

Sampler = Callable[..., Tensor]


@dataclass(frozen=True)
class GanMethod:
    """A GAN recipe: the losses, critic steps per generator step, optimiser and its settings.

    ``loss``: ``"nonsaturating"`` (logistic discriminator, generator maximises
    ``log D(G(z))``) or ``"wasserstein"`` (critic scores, :func:`~trickbag.losses.critic_loss`).
    ``clip``: clamp the critic's weights to ``[-clip, clip]`` after each step (WGAN);
    ``gp_weight``: the gradient penalty's lambda (WGAN-GP); zero or ``None`` turns either off.
    """

    name: str
    loss: str
    n_critic: int
    optimizer: str
    lr: float
    betas: tuple[float, float] = (0.5, 0.999)
    clip: float | None = None
    gp_weight: float | None = None

    def __post_init__(self) -> None:
        if self.loss not in ("nonsaturating", "wasserstein"):
            raise ValueError(f"loss must be 'nonsaturating' or 'wasserstein', got {self.loss!r}")
        if self.optimizer not in ("adam", "rmsprop"):
            raise ValueError(f"optimizer must be 'adam' or 'rmsprop', got {self.optimizer!r}")
        check_positive_int("n_critic", self.n_critic)
        check_positive("lr", self.lr)
        if self.clip is not None:
            check_positive("clip", self.clip)
        if self.gp_weight is not None:
            check_nonnegative("gp_weight", self.gp_weight)

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        if self.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=self.lr)
        return torch.optim.Adam(params, lr=self.lr, betas=tuple(self.betas))


#: The three recipes with their papers' settings.
METHODS: dict[str, GanMethod] = {
    # Goodfellow et al. 2014, with Radford et al.'s (DCGAN) Adam settings
    "gan": GanMethod("gan", "nonsaturating", n_critic=1, optimizer="adam", lr=2e-4, betas=(0.5, 0.999)),
    # Arjovsky et al. 2017, Algorithm 1: c = 0.01, RMSProp 5e-5, n_critic = 5
    "wgan": GanMethod("wgan", "wasserstein", n_critic=5, optimizer="rmsprop", lr=5e-5, clip=0.01),
    # Gulrajani et al. 2017, Algorithm 1: lambda = 10, n_critic = 5, Adam(1e-4, 0, 0.9)
    "wgan_gp": GanMethod("wgan_gp", "wasserstein", n_critic=5, optimizer="adam", lr=1e-4, betas=(0.0, 0.9),
                         gp_weight=10.0),
}


def method(name: str | GanMethod, **changes: Any) -> GanMethod:
    """A recipe by name (:data:`METHODS`), with some settings changed.

    Example:
        >>> method("wgan_gp", lr=2e-4).lr, method("wgan").clip
        (0.0002, 0.01)
    """
    if isinstance(name, GanMethod):
        base = name
    elif name not in METHODS:
        raise unknown("GAN method", name, METHODS)
    else:
        base = METHODS[name]
    valid = {f for f in GanMethod.__dataclass_fields__ if f != "name"}
    for key in changes:
        if key not in valid:
            raise unknown(f"setting of GAN method {base.name!r}", key, valid)
    if "betas" in changes:
        changes["betas"] = tuple(changes["betas"])
    return replace(base, **changes)


@dataclass
class _Window:
    """Means of the losses since the last record."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, **values: Tensor) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def pop(self) -> dict[str, float]:
        out = {k: self.sums[k] / self.counts[k] for k in self.sums}
        self.sums, self.counts = {}, {}
        return out


def train_gan(
    generator: nn.Module,
    critic: nn.Module,
    real: Sampler,
    *,
    recipe: str | GanMethod = "wgan_gp",
    steps: int = 1000,
    batch_size: int = 256,
    z_dim: int | None = None,
    seed: int = 0,
    eval_every: int | None = None,
    evaluate: Callable[[nn.Module, int], Mapping[str, float]] | None = None,
    log_every: int = 50,
    device: str | torch.device = "cpu",
) -> list[dict[str, float]]:
    r"""Train ``generator`` against ``critic`` for ``steps`` generator updates.

    Each generator update follows ``n_critic`` critic updates on fresh real and generated
    batches. Non-saturating GAN: :math:`L_D = \mathrm{softplus}(-D(x)) + \mathrm{softplus}(D(G(z)))`,
    :math:`L_G = \mathrm{softplus}(-D(G(z)))`. WGAN: :math:`L_D = \mathbb{E}[D(G(z))] - \mathbb{E}[D(x)]`
    (plus the gradient penalty for WGAN-GP, or weight clipping after each step for WGAN),
    :math:`L_G = -\mathbb{E}[D(G(z))]`. The critic's Wasserstein estimate
    :math:`\mathbb{E}[D(x)] - \mathbb{E}[D(G(z))]` on the training batches (before any penalty)
    is recorded as ``w_estimate``; it estimates the Earth-Mover distance only while the critic
    is (close to) 1-Lipschitz.

    Args:
        generator: maps ``(n, z_dim)`` noise to samples; ``generator.z_dim`` is used when
            ``z_dim`` is not given.
        critic: maps samples to one score (logit) per example.
        real: ``real(n, generator=torch.Generator, device=...)`` draws ``n`` real samples.
        recipe: a name in :data:`METHODS` (``"gan"``, ``"wgan"``, ``"wgan_gp"``) or a
            :class:`GanMethod`.
        steps: generator updates. batch_size: examples per batch.
        seed: seeds the noise and real batches (initial weights are the caller's).
        eval_every: call ``evaluate(generator, step)`` every this many generator updates and
            at the end; its values join that step's record.
        log_every: generator updates per record of the mean losses.

    Returns:
        The history: one dict per record (``step``, ``d_loss``, ``g_loss``, ``w_estimate``,
        ``gp`` where it applies, ``train_time`` (seconds, evaluations excluded) and the
        evaluation's values).

    Example:
        >>> import torch
        >>> from trickbag.gan import MLPCritic, MLPGenerator, ring
        >>> torch.manual_seed(0) is not None
        True
        >>> g, d = MLPGenerator(2, (2,), hidden=16, depth=2), MLPCritic((2,), hidden=16, depth=2)
        >>> history = train_gan(g, d, ring(8).sample, recipe="wgan_gp", steps=4, batch_size=32, log_every=2)
        >>> [h["step"] for h in history], sorted(history[-1])[:3]
        ([2, 4], ['d_loss', 'g_loss', 'gp'])

    References: Goodfellow et al., NeurIPS 2014; Arjovsky, Chintala, Bottou, ICML 2017;
    Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville, NeurIPS 2017.
    """
    recipe = method(recipe)
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    check_positive_int("log_every", log_every)
    if eval_every is not None:
        check_positive_int("eval_every", eval_every)
    z_dim = z_dim if z_dim is not None else getattr(generator, "z_dim", None)
    if z_dim is None:
        raise ValueError("give z_dim (or a generator with a z_dim attribute)")
    device = torch.device(device)
    generator.to(device).train()
    critic.to(device).train()
    opt_d = recipe.make_optimizer(critic.parameters())
    opt_g = recipe.make_optimizer(generator.parameters())
    rng = torch.Generator().manual_seed(seed)
    gp_rng = torch.Generator(device=device).manual_seed(seed + 1)
    wasserstein = recipe.loss == "wasserstein"
    window, history = _Window(), []
    start, evaluating_time = time.perf_counter(), 0.0

    def noise(n: int) -> Tensor:
        return torch.randn(n, z_dim, generator=rng).to(device)

    for step in range(1, steps + 1):
        for _ in range(recipe.n_critic):
            x = real(batch_size, generator=rng, device=device)
            with torch.no_grad():
                fake = generator(noise(batch_size))
            r, f = critic(x), critic(fake)
            if wasserstein:
                loss = critic_loss(r, f)
                window.add(w_estimate=-loss.detach())
                if recipe.gp_weight:
                    gp = gradient_penalty(critic, x, fake, weight=recipe.gp_weight, generator=gp_rng)
                    window.add(gp=gp.detach())
                    loss = loss + gp
            else:
                loss = discriminator_loss(r, f)
            opt_d.zero_grad(set_to_none=True)
            loss.backward()
            opt_d.step()
            if recipe.clip:
                clip_weights_(critic, recipe.clip)
            window.add(d_loss=loss.detach())
        for p in critic.parameters():
            p.requires_grad_(False)
        scores = critic(generator(noise(batch_size)))
        g_loss = generator_loss(scores) if wasserstein else non_saturating_loss(scores)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        for p in critic.parameters():
            p.requires_grad_(True)
        window.add(g_loss=g_loss.detach())
        evaluating = evaluate is not None and eval_every is not None and (step % eval_every == 0 or step == steps)
        if step % log_every == 0 or step == steps or evaluating:
            record: dict[str, float] = {"step": step, **window.pop(),
                                        "train_time": time.perf_counter() - start - evaluating_time}
            if evaluating:
                t0 = time.perf_counter()
                was = generator.training
                generator.eval()
                record.update(evaluate(generator, step))
                generator.train(was)
                evaluating_time += time.perf_counter() - t0
            history.append(record)
    return history
