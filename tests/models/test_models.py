"""Reference models: shapes, parameter counts, and the layer-trick options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trickbag.layers import BlurPool2d, ShrinkageResidualBlock, SoftThreshold
from trickbag.models import mlp, resnet_cifar, small_cnn, text_cnn


def count(m):
    return sum(p.numel() for p in m.parameters())


def test_resnet_parameter_counts_match_the_papers():
    assert count(resnet_cifar(18)) == 11_173_962  # ResNet-18, CIFAR variant
    assert count(resnet_cifar(20)) == pytest.approx(0.27e6, rel=0.02)
    assert count(resnet_cifar(56)) == pytest.approx(0.85e6, rel=0.02)
    with pytest.raises(ValueError, match="depth must be 18 or 6n\\+2"):
        resnet_cifar(19)


@pytest.mark.parametrize("kwargs", [{}, {"norm": "group"}, {"activation": "gelu"}, {"blurpool": True},
                                    {"block": "shrinkage"}, {"dropout": 0.2, "width": 8}])
def test_resnet_options(kwargs):
    net = resnet_cifar(8, num_classes=5, **kwargs)
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 5)
    if kwargs.get("blurpool"):
        assert any(isinstance(m, BlurPool2d) for m in net.modules())
    if kwargs.get("block") == "shrinkage":
        assert any(isinstance(m, ShrinkageResidualBlock) for m in net.modules())


def test_small_cnn_and_mlp_options():
    x = torch.randn(3, 1, 28, 28)
    assert small_cnn(1, 10, norm="none", activation="leaky_relu", dropout=0.3)(x).shape == (3, 10)
    assert small_cnn(1, 10, activation="soft_threshold")(x).shape == (3, 10)
    net = mlp(784, 10, hidden=(32, 16), norm="layer", dropout=0.1)
    assert net(x).shape == (3, 10)
    kinds = [type(m).__name__ for m in net]
    assert kinds[:5] == ["Flatten", "Linear", "LayerNorm", "ReLU", "Dropout"]  # FC-norm-act pattern
    assert isinstance(small_cnn(1, 10, activation="soft_threshold")[2], SoftThreshold)


def test_text_cnn_with_pretrained_vectors():
    vocab = {"<pad>": 0, "<unk>": 1, "good": 2, "bad": 3}
    net = text_cnn(4, 2, embed_dim=3, num_filters=5, pretrained={"good": [1.0, 1.0, 1.0]}, vocab=vocab,
                   freeze_embedding=True)
    assert net.embedding_init == (1, 3)
    assert net.embedding.weight[2].tolist() == [1.0, 1.0, 1.0] and not net.embedding.weight.requires_grad
    assert net(torch.randint(0, 4, (2, 7))).shape == (2, 2)
    with pytest.raises(ValueError, match="needs the vocabulary"):
        text_cnn(4, 2, pretrained={"good": [1.0]})


def test_models_accept_channels_last_and_bf16():
    net = resnet_cifar(8).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(x).shape == (2, 10)
    assert isinstance(net.stem[0], nn.Conv2d)
