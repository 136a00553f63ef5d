"""Normalisation layers: a factory, BatchNorm -> GroupNorm surgery, spectral normalisation."""

from __future__ import annotations

import torch
from torch import nn

from trickbag._validate import check_choice, check_positive_int

__all__ = ["NORMS", "make_norm", "group_count", "apply_group_norm", "apply_batchnorm_options", "apply_spectral_norm"]

NORMS = ("batch", "group", "instance", "layer", "none")


def group_count(channels: int, groups: int) -> int:
    """The largest number of groups ``<= groups`` that divides ``channels``.

    Example:
        >>> group_count(48, 32), group_count(64, 32), group_count(7, 32)
        (24, 32, 7)
    """
    check_positive_int("channels", channels)
    check_positive_int("groups", groups)
    return max(d for d in range(1, min(groups, channels) + 1) if channels % d == 0)


def make_norm(kind: str, channels: int, *, dim: int = 2, groups: int = 32) -> nn.Module:
    """A normalisation layer by name, for feature maps (``dim=2``) or feature vectors (``dim=1``).

    ``batch``: BatchNorm; ``group``: GroupNorm with :func:`group_count` groups; ``instance``:
    InstanceNorm2d with affine parameters; ``layer``: GroupNorm with one group on maps
    (LayerNorm over C, H, W), LayerNorm on vectors; ``none``: Identity.

    Example:
        >>> gn = make_norm("group", 48)
        >>> type(gn).__name__, gn.num_groups, gn.num_channels
        ('GroupNorm', 24, 48)
    """
    check_choice("norm", kind, NORMS)
    check_positive_int("channels", channels)
    if dim not in (1, 2):
        raise ValueError(f"dim must be 1 (vectors) or 2 (feature maps), got {dim!r}")
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(channels) if dim == 2 else nn.BatchNorm1d(channels)
    if kind == "group":
        return nn.GroupNorm(group_count(channels, groups), channels)
    if kind == "instance":
        if dim == 1:
            raise ValueError("instance norm needs feature maps (dim=2); for vectors use 'layer' or 'batch'")
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.GroupNorm(1, channels) if dim == 2 else nn.LayerNorm(channels)


def apply_group_norm(model: nn.Module, *, groups: int = 32) -> nn.Module:
    """Replace every ``BatchNorm2d`` of ``model`` by ``GroupNorm`` in place (Wu and He 2018).

    The group count is ``groups`` when it divides the channels, else the largest count below it
    that does. Affine parameters are copied over with their device, dtype and ``requires_grad``
    (a frozen BatchNorm stays frozen; a float64 or half model gets float64 or half norms);
    running statistics are dropped (GroupNorm has none: it normalises each example on its own,
    so it does not care about batch size).

    Example:
        >>> import torch
        >>> net = apply_group_norm(torch.nn.Sequential(torch.nn.Conv2d(3, 48, 3), torch.nn.BatchNorm2d(48)))
        >>> type(net[1]).__name__, net[1].num_groups
        ('GroupNorm', 24)

    Reference: Wu and He, "Group Normalization", ECCV 2018.
    """
    check_positive_int("groups", groups)
    plan = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                plan.append((parent, name, child))
    for parent, name, bn in plan:
        ref = bn.weight if bn.affine else bn.running_mean
        gn = nn.GroupNorm(group_count(bn.num_features, groups), bn.num_features, eps=bn.eps, affine=bn.affine,
                          device=ref.device if ref is not None else None, dtype=ref.dtype if ref is not None else None)
        if bn.affine:
            with torch.no_grad():
                gn.weight.copy_(bn.weight)
                gn.bias.copy_(bn.bias)
            gn.weight.requires_grad_(bn.weight.requires_grad)
            gn.bias.requires_grad_(bn.bias.requires_grad)
        gn.train(bn.training)
        setattr(parent, name, gn)
    return model


@torch.no_grad()
def apply_batchnorm_options(
    model: nn.Module,
    *,
    momentum: float | None = None,
    eps: float | None = None,
    learn_scale: bool = True,
    learn_shift: bool = True,
) -> nn.Module:
    """Set the options fast short-run recipes use on every BatchNorm of ``model``, in place.

    Args:
        momentum: torch's convention, the weight of the newest batch in the running statistics
            (torch's default 0.1); short runs use large values, e.g. 0.4 (the airbench recipes'
            "0.6" is the weight of the old statistics). None keeps each layer's.
        eps: the variance floor (None keeps each layer's).
        learn_scale: False fixes every scale at 1 (it is reset to 1 and frozen): with a
            following linear layer or a scale-invariant loss the scale is redundant, and not
            learning it removes one source of noise.
        learn_shift: False freezes the shifts (rarely wanted).

    Returns:
        The model. Raises ``ValueError`` when it has no BatchNorm.

    Example:
        >>> import torch
        >>> net = apply_batchnorm_options(torch.nn.Sequential(torch.nn.BatchNorm2d(4)), momentum=0.4, learn_scale=False)
        >>> net[0].momentum, net[0].weight.requires_grad
        (0.4, False)

    Reference: Page, "How to Train Your ResNet", 2018; Jordan, "94% on CIFAR-10 in 3.29
    Seconds on a Single GPU", arXiv:2404.00498, 2024.
    """
    if momentum is not None and not 0.0 < momentum <= 1.0:
        raise ValueError(f"momentum must be in (0, 1] (torch's convention: the new batch's weight), got {momentum!r}")
    if eps is not None and not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError(f"apply_batchnorm_options: {type(model).__name__} has no BatchNorm layer")
    for bn in norms:
        if momentum is not None:
            bn.momentum = momentum
        if eps is not None:
            bn.eps = eps
        if bn.affine:
            if not learn_scale:
                bn.weight.fill_(1.0)
            bn.weight.requires_grad_(learn_scale)
            bn.bias.requires_grad_(learn_shift)
    return model


def apply_spectral_norm(
    model: nn.Module, *, types: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear), n_power_iterations: int = 1
) -> nn.Module:
    """Spectrally normalise the weight of every layer of the given types, through torch's own
    ``torch.nn.utils.parametrizations.spectral_norm``: each forward divides the weight by its
    largest singular value, estimated by power iteration.

    Example:
        >>> import torch
        >>> net = apply_spectral_norm(torch.nn.Sequential(torch.nn.Linear(4, 4)))
        >>> hasattr(net[0], "parametrizations")
        True

    Reference: Miyato, Kataoka, Koyama, Yoshida, "Spectral Normalization for Generative
    Adversarial Networks", ICLR 2018.
    """
    check_positive_int("n_power_iterations", n_power_iterations)
    targets = [m for m in model.modules() if isinstance(m, types)]
    if not targets:
        raise ValueError(f"no layer of type {[t.__name__ for t in types]} to normalise in {type(model).__name__}")
    for m in targets:
        nn.utils.parametrizations.spectral_norm(m, n_power_iterations=n_power_iterations)
    return model
