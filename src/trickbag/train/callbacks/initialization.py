"""Initialisation that needs the training data: patch whitening of the first convolution."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from trickbag._validate import check_nonnegative, check_positive_int
from trickbag.init import init_patch_whitening_
from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["PatchWhitening", "training_images"]


def training_images(loader: Any, count: int, *, seed: int = 0) -> Tensor:
    """``count`` training images drawn uniformly at random without replacement (seeded by
    ``seed``), as the model sees them (normalised, not augmented), read from the loader's data
    without advancing the loader or touching its generator.

    A random sample, not the first ``count``: data sets stored class by class (an image folder,
    the CIFAR-10 pack) would otherwise give images of one class only."""
    if hasattr(loader, "inputs"):  # DeviceLoader: the whole data set is on the device
        n = len(loader.inputs)
    elif hasattr(loader, "data"):  # TorchLoader over a map-style data set
        n = len(loader.data)
    else:
        raise ValueError(f"cannot read training images from a {type(loader).__name__}; use trickbag's loaders")
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count].sort().values
    if hasattr(loader, "inputs"):
        images = loader.inputs.index_select(0, pick.to(loader.inputs.device))
    else:
        images = torch.stack([loader.data[int(i)][0] for i in pick]).to(loader.device)
    normalize = getattr(loader, "normalize", None)
    return normalize(images) if normalize is not None else images


class PatchWhitening(Callback):
    """Initialise the model's first convolution (or the one named ``layer``) as a patch-whitening
    filter bank of ``num_images`` training images drawn at random (seeded by the run's seed;
    :func:`training_images`, :func:`~trickbag.init.patch_whitening_weights`), at the start of
    training. The filters stay
    frozen unless ``trainable``; the bias trains for ``bias_epochs`` epochs, then freezes too
    (None: it keeps training). A resumed run keeps its checkpoint's weights."""

    touches = frozenset({"weights"})

    def __init__(self, num_images: int = 5000, eps: float = 5e-4, mode: str = "pca", trainable: bool = False,
                 bias_epochs: int | None = None, layer: str | None = None):
        check_positive_int("num_images", num_images)
        check_nonnegative("eps", eps)
        if bias_epochs is not None:
            check_nonnegative("bias_epochs", bias_epochs)
        self.num_images, self.eps, self.mode, self.trainable = num_images, eps, mode, trainable
        self.bias_epochs, self.layer = bias_epochs, layer

    def _conv(self, model: nn.Module) -> nn.Conv2d:
        if self.layer is not None:
            modules = dict(model.named_modules())
            if self.layer not in modules or not isinstance(modules[self.layer], nn.Conv2d):
                convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
                raise ValueError(f"PatchWhitening: no Conv2d named {self.layer!r}; the model's convolutions: {convs[:8]}")
            return modules[self.layer]
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                return m
        raise ValueError(f"PatchWhitening: {type(model).__name__} has no Conv2d to initialise")

    def on_fit_start(self, state: TrainState) -> None:
        conv = self._conv(state.raw_model)
        if state.step == 0:  # a resumed run keeps the weights its checkpoint holds
            images = training_images(state.train_data, self.num_images, seed=state.seed)
            init_patch_whitening_(conv, images.float(), eps=self.eps, mode=self.mode, trainable=self.trainable)
        else:
            conv.weight.requires_grad_(self.trainable)
        self._freeze_bias(state, conv)

    def on_epoch_end(self, state: TrainState) -> None:
        self._freeze_bias(state, self._conv(state.raw_model), done=state.epoch + 1)

    def _freeze_bias(self, state: TrainState, conv: nn.Conv2d, done: int | None = None) -> None:
        done = state.epoch if done is None else done
        if conv.bias is not None and self.bias_epochs is not None and done >= self.bias_epochs:
            conv.bias.requires_grad_(False)
            conv.bias.grad = None
