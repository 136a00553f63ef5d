"""GANs on a CPU: the non-saturating GAN, WGAN (weight clipping, RMSProp) and WGAN-GP, with
fully-connected and DCGAN-style nets, the 2-D mixture benchmarks, mode coverage, a Fréchet
distance in our own classifier's features, and the ``trickbag gan`` runner and report."""

from trickbag.gan.data import ImageSampler, Mixture, grid, ring
from trickbag.gan.metrics import FeatureFrechet, ModeCoverage, frechet_distance, gaussian_stats, mode_coverage
from trickbag.gan.nets import DCGANCritic, DCGANGenerator, MLPCritic, MLPGenerator
from trickbag.gan.train import METHODS, GanMethod, method, train_gan

__all__ = [
    "DCGANCritic",
    "DCGANGenerator",
    "FeatureFrechet",
    "GanMethod",
    "ImageSampler",
    "METHODS",
    "MLPCritic",
    "MLPGenerator",
    "Mixture",
    "ModeCoverage",
    "frechet_distance",
    "gaussian_stats",
    "grid",
    "method",
    "mode_coverage",
    "ring",
    "train_gan",
]
