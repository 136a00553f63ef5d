"""How good are the samples: mode coverage on Gaussian mixtures, and a Fréchet distance in the
features of our own Fashion-MNIST classifier (not FID: not Inception's features)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trickbag._validate import check_positive, check_range
from trickbag.gan.data import Mixture

__all__ = ["ModeCoverage", "mode_coverage", "frechet_distance", "gaussian_stats", "FeatureFrechet"]


@dataclass(frozen=True)
class ModeCoverage:
    """``modes_covered`` of ``modes``; ``high_quality``: the share of samples within ``sds``
    standard deviations of their nearest mode; ``counts``: high-quality samples per mode;
    ``modes_reached``: modes counted the same way with the looser radius ``reach_sds``;
    ``median_sd``: the median distance of a sample to its nearest mode, in standard deviations."""

    modes_covered: int
    modes: int
    high_quality: float
    counts: list[int]
    modes_reached: int = 0
    median_sd: float = 0.0


def mode_coverage(samples: Tensor, mixture: Mixture, *, sds: float = 3.0, min_share: float = 0.2,
                  reach_sds: float = 10.0) -> ModeCoverage:
    r"""The standard mode-coverage protocol for 2-D mixtures (Metz et al. 2017; Srivastava et
    al. 2017; Lin et al. 2018).

    A sample is *high quality* when it lies within ``sds`` standard deviations of the nearest
    mode centre, :math:`\min_k \lVert x - c_k \rVert \le s\,\sigma`. A mode is *covered* when
    at least ``min_share`` of its fair share of the samples, :math:`\text{min\_share} \cdot n / K`,
    are high-quality samples assigned to it (PacGAN's rule: 20 of 2,500 samples on 25 modes, a
    fifth of the fair share of 100). A looser count, ``modes_reached``, applies the same rule
    within ``reach_sds`` standard deviations (10: a tenth of the ring's radius at std 0.02, a
    quarter of the grid's spacing at std 0.05), and ``median_sd`` measures precision on a
    continuous scale: it separates "near every mode but blurred" from "sharp but missing modes".

    Example:
        >>> from trickbag.gan.data import ring
        >>> m = ring(4, radius=1.0, std=0.1)
        >>> samples = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.02]] * 5 + [[0.5, 0.5]] * 2)
        >>> c = mode_coverage(samples, m)
        >>> c.modes_covered, round(c.high_quality, 3), c.counts, c.modes_reached
        (2, 0.833, [5, 5, 0, 0], 2)
    """
    check_positive("sds", sds)
    check_range("min_share", min_share, 0.0, 1.0)
    if samples.dim() != 2 or samples.shape[1] != mixture.centers.shape[1] or samples.shape[0] == 0:
        raise ValueError(f"samples must be (n, {mixture.centers.shape[1]}) with n > 0, got {tuple(samples.shape)}")
    d = torch.cdist(samples.double(), mixture.centers.double().to(samples.device))
    dist, nearest = d.min(dim=1)
    good = dist <= sds * mixture.std
    counts = torch.bincount(nearest[good], minlength=mixture.modes).tolist()
    need = min_share * samples.shape[0] / mixture.modes
    covered = sum(1 for c in counts if c > 0 and c >= need)
    near = torch.bincount(nearest[dist <= reach_sds * mixture.std], minlength=mixture.modes).tolist()
    reached = sum(1 for c in near if c > 0 and c >= need)
    median = (dist.median() / mixture.std).item()
    return ModeCoverage(covered, mixture.modes, good.double().mean().item(), counts, reached, median)


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and (unbiased) covariance of ``(n, d)`` features, in float64."""
    f = features.double().flatten(1)
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors, got {f.shape[0]}")
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    r"""The Fréchet (2-Wasserstein) distance between two Gaussians,

    .. math:: d^2 = \lVert \mu_1 - \mu_2 \rVert^2 + \mathrm{Tr}\big(\Sigma_1 + \Sigma_2
              - 2 (\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2})^{1/2}\big)

    computed in float64 with symmetric eigendecompositions (no ``scipy.linalg.sqrtm``: the
    matrix inside the trace is symmetric positive semi-definite, so its eigenvalues are real).

    Example:
        >>> import torch
        >>> one = lambda m, s: (torch.tensor([m]), torch.tensor([[s * s]]))
        >>> round(frechet_distance(*one(0.0, 1.0), *one(3.0, 2.0)), 6)  # (0 - 3)^2 + (1 - 2)^2
        10.0

    Reference: Dowson, Landau, "The Fréchet distance between multivariate normal
    distributions", J. Multivariate Anal. 1982; Heusel et al., "GANs Trained by a Two Time-Scale
    Update Rule Converge to a Local Nash Equilibrium", NeurIPS 2017 (FID uses it on Inception
    features).
    """
    mu1, mu2, s1, s2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    vals, vecs = torch.linalg.eigh((s1 + s1.T) / 2)
    root = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    inner = root @ s2 @ root
    trace_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * trace_sqrt
    return float(value.clamp_min(0))


class FeatureFrechet:
    """Fréchet distance between real and generated images in the features of a classifier of
    our own (here: trickbag's small CNN trained on Fashion-MNIST, its pooled penultimate
    layer). It ranks sample sets like FID does, but its numbers are on another scale and are
    comparable only with other numbers from the same classifier: call it ours, never FID.

    Args:
        features: maps a batch of images in ``[-1, 1]`` to ``(n, d)`` features.
        real: real images in ``[-1, 1]`` (or uint8) whose statistics are the reference.
    """

    def __init__(self, features: nn.Module, real: Tensor, *, batch_size: int = 500):
        self.features, self.batch_size = features, batch_size
        self.real_stats = gaussian_stats(self.embed(real))

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        from trickbag.gan.data import to_signed

        was = self.features.training
        self.features.eval()
        try:
            return torch.cat([self.features(to_signed(images[i:i + self.batch_size])).double()
                              for i in range(0, images.shape[0], self.batch_size)])
        finally:
            self.features.train(was)

    def __call__(self, images: Tensor) -> float:
        return frechet_distance(*self.real_stats, *gaussian_stats(self.embed(images)))
