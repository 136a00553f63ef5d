"""torchvision and timm models in the Trainer, in configs (``torchvision:ARCH``, ``timm:ARCH``)
and under the model-surgery tricks. The peer libraries are optional: without them the config
names fail with the extra to install; with them (the GPU machine has torchvision) the models
train."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trickbag._optional import available
from trickbag.data import DeviceLoader, synthetic
from trickbag.train import Trainer
from trickbag.train.build import build_run, check_names
from trickbag.train.config import load_config

HAS_TV = available("torchvision.models")
HAS_TIMM = available("timm")
needs_tv = pytest.mark.skipif(not HAS_TV, reason="torchvision is not installed (extra: vision)")
needs_timm = pytest.mark.skipif(not HAS_TIMM, reason="timm is not installed (extra: timm)")

IMAGES = synthetic(num_train=64, num_test=32, shape=(3, 32, 32), num_classes=5, seed=2)
GRAY = synthetic(num_train=64, num_test=32, shape=(1, 28, 28), num_classes=5, seed=2)


def cfg(model, *tricks, steps=3):
    return load_config({
        "data": {"name": "synthetic", "batch_size": 16, "val_fraction": 0.25},
        "model": model,
        "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
        "tricks": list(tricks),
        "train": {"epochs": None, "steps": steps, "progress": False, "checkpoint_every_steps": None,
                  "checkpoint_every_epochs": None, "device": "cpu"},
    })


def test_check_names_accepts_library_prefixes_and_names_the_valid_ones():
    check_names(cfg({"name": "torchvision:resnet18"}))
    check_names(cfg({"name": "timm:convnext_atto"}))
    with pytest.raises(ValueError, match="did you mean torchvision:resnet18.*torchvision:ARCH"):
        check_names(cfg({"name": "torchvison:resnet18"}))


def test_an_unknown_library_is_named():
    with pytest.raises(ValueError, match="'keras'.*torchvision:ARCH, timm:ARCH, or package.module:callable"):
        build_run(cfg({"name": "keras:resnet18"}), splits=IMAGES)


@pytest.mark.skipif(HAS_TV, reason="torchvision is installed")
def test_torchvision_model_without_torchvision_names_the_extra():
    with pytest.raises(ImportError, match=r"trickbag\[vision\]"):
        build_run(cfg({"name": "torchvision:resnet18"}), splits=IMAGES)


@pytest.mark.skipif(HAS_TIMM, reason="timm is installed")
def test_timm_model_without_timm_names_the_extra():
    with pytest.raises(ImportError, match=r"trickbag\[timm\]"):
        build_run(cfg({"name": "timm:resnet18"}), splits=IMAGES)


@needs_tv
def test_torchvision_resnet_trains_in_the_trainer_deterministically():
    import torchvision

    def run():
        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=5)
        trainer = Trainer(model, DeviceLoader(IMAGES.train, 16), val_data=DeviceLoader(IMAGES.test, 32, shuffle=False),
                          optimizer={"name": "sgd", "lr": 0.01}, steps=3, device="cpu", progress=False)
        trainer.fit()
        return trainer, [t.detach().clone() for t in model.state_dict().values()]

    a, wa = run()
    _, wb = run()
    assert a.state.step == 3 and all(torch.equal(x, y) for x, y in zip(wa, wb))
    assert 0.0 <= a.state.metrics["val_acc"] <= 1.0


@needs_tv
def test_torchvision_config_with_surgery_tricks():
    run = build_run(cfg({"name": "torchvision:resnet18"}, "blurpool", "group_norm", "label_smoothing"), splits=IMAGES)
    model = run.trainer.model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    # conv1, maxpool, and in layers 2 to 4 the first block's conv1 and its downsample shortcut
    assert len(model.blurpool_replaced) == 2 + 3 * 2
    results = run.fit()
    assert run.trainer.state.step == 3 and math.isfinite(results["test"]["test_loss"])


@needs_tv
def test_torchvision_zero_init_residual_zeroes_each_blocks_last_norm():
    import torchvision

    from trickbag.init import init_weights

    model = init_weights(torchvision.models.resnet18(num_classes=5), "kaiming_normal", zero_last_norm=True)
    blocks = [m for m in model.modules() if isinstance(m, torchvision.models.resnet.BasicBlock)]
    assert len(blocks) == 8 and all(torch.count_nonzero(b.bn2.weight) == 0 for b in blocks)


@needs_tv
def test_torchvision_refuses_gray_images_with_a_way_out():
    with pytest.raises(ValueError, match="3-channel.*timm:resnet18"):
        build_run(cfg({"name": "torchvision:resnet18"}), splits=GRAY)


@needs_timm
def test_timm_model_adapts_to_gray_images_and_trains():
    run = build_run(cfg({"name": "timm:resnet18"}, "mixup"), splits=GRAY)
    assert run.trainer.model.conv1.in_channels == 1
    results = run.fit()
    assert run.trainer.state.step == 3 and math.isfinite(results["test"]["test_loss"])
