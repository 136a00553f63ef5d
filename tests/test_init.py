"""Initialisation schemes against the variances theory predicts, and embedding loading."""

from __future__ import annotations

import gzip

import pytest
import torch
from torch import nn

from trickbag.init import (
    identity_init_,
    init_patch_whitening_,
    init_weights,
    load_pretrained_embeddings,
    patch_whitening_weights,
    zero_init_residual_,
)
from trickbag.layers import ResidualBlock


def _var(scheme, fan_in=800, fan_out=600, **kw):
    torch.manual_seed(0)
    lin = init_weights(nn.Linear(fan_in, fan_out), scheme, **kw)
    return lin.weight.double().var().item(), lin


@pytest.mark.parametrize("scheme", ["xavier_uniform", "xavier_normal"])
@pytest.mark.parametrize("nonlinearity, gain2", [("linear", 1.0), ("tanh", (5 / 3) ** 2), ("relu", 2.0)])
def test_xavier_variance(scheme, nonlinearity, gain2):
    var, lin = _var(scheme, nonlinearity=nonlinearity)
    assert var == pytest.approx(gain2 * 2 / (800 + 600), rel=0.02)
    assert torch.equal(lin.bias, torch.zeros(600))


@pytest.mark.parametrize("scheme", ["kaiming_uniform", "kaiming_normal"])
@pytest.mark.parametrize("mode, fan", [("fan_in", 800), ("fan_out", 600)])
def test_kaiming_variance(scheme, mode, fan):
    var, _ = _var(scheme, mode=mode)
    assert var == pytest.approx(2.0 / fan, rel=0.02)
    other_fan = 600 if fan == 800 else 800
    assert var != pytest.approx(2.0 / other_fan, rel=0.1)  # the mode matters
    var, _ = _var(scheme, mode=mode, nonlinearity="leaky_relu", negative_slope=0.2)
    assert var == pytest.approx(2.0 / (1 + 0.04) / fan, rel=0.02)


def test_conv_fan_counts_the_kernel():
    torch.manual_seed(0)
    conv = init_weights(nn.Conv2d(64, 128, 3), "kaiming_normal")
    assert conv.weight.var().item() == pytest.approx(2.0 / (64 * 9), rel=0.03)


def test_orthogonal_rows_and_dirac_identity():
    lin = init_weights(nn.Linear(100, 40), "orthogonal", nonlinearity="relu")
    torch.testing.assert_close(lin.weight @ lin.weight.T, 2.0 * torch.eye(40), atol=1e-4, rtol=0)
    conv = init_weights(nn.Conv2d(8, 8, 3, padding=1), "dirac")
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(conv(x), x)
    torch.manual_seed(0)
    other = init_weights(nn.Conv2d(64, 256, 1), "dirac")  # not 3x3: Kaiming (2 / fan_in), not Xavier
    var = other.weight.double().var().item()
    assert var == pytest.approx(2.0 / 64, rel=0.05)
    assert var != pytest.approx(2.0 * 2 / (64 + 256), rel=0.3)


@pytest.mark.parametrize("groups", [2, 8])
def test_dirac_respects_groups(groups):
    """A grouped (or depthwise) 3x3 convolution passes every channel through, not channel 0 only."""
    conv = init_weights(nn.Conv2d(8, 8, 3, padding=1, groups=groups), "dirac")
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(conv(x), x)


def test_kaiming_keeps_a_deep_relu_signal_and_xavier_loses_it():
    def depth_ratio(scheme):
        torch.manual_seed(0)
        layers = [m for _ in range(30) for m in (nn.Linear(400, 400), nn.ReLU())]
        net = init_weights(nn.Sequential(*layers), scheme, nonlinearity="relu" if "kaiming" in scheme else "linear")
        x = torch.randn(1000, 400)
        with torch.no_grad():
            return net(x).pow(2).mean().item() / x.pow(2).mean().item()

    assert 0.5 < depth_ratio("kaiming_normal") < 2.0
    assert depth_ratio("xavier_normal") < 1e-5  # halves every layer: 2^-30


def test_norm_reset_and_zero_last_norm():
    net = nn.Sequential(ResidualBlock(4, 4), ResidualBlock(4, 8, stride=2))
    with torch.no_grad():
        net[0].norm1.weight.fill_(3.0)
    init_weights(net, "kaiming_normal", zero_last_norm=True)
    assert torch.all(net[0].norm1.weight == 1) and torch.all(net[0].norm2.weight == 0)
    assert torch.all(net[1].norm2.weight == 0)
    with pytest.raises(ValueError, match="has no residual block"):
        zero_init_residual_(nn.Sequential(nn.Linear(2, 2)))


def test_bad_scheme_and_nonlinearity():
    with pytest.raises(ValueError, match="unknown scheme 'he'"):
        init_weights(nn.Linear(2, 2), "he")
    with pytest.raises(ValueError, match="unknown nonlinearity 'softsign'"):
        init_weights(nn.Linear(2, 2), "xavier_normal", nonlinearity="softsign")


def test_embeddings_from_dict_and_counts():
    emb = nn.Embedding(4, 3)
    before = emb.weight.detach().clone()
    out = load_pretrained_embeddings(emb, {"a": [1, 2, 3], "c": torch.tensor([0.0, 0.0, 1.0]), "zzz": [9, 9, 9]},
                                     ["<pad>", "a", "b", "c"], freeze=True)
    assert out == (2, 2)
    assert emb.weight[1].tolist() == [1, 2, 3] and emb.weight[3].tolist() == [0, 0, 1]
    assert torch.equal(emb.weight[2], before[2])
    assert not emb.weight.requires_grad


@pytest.mark.parametrize("header, compress", [(False, False), (True, False), (True, True)])
def test_embeddings_from_glove_and_word2vec_files(tmp_path, header, compress):
    lines = ["the 0.1 0.2", "movie 1.5 -2.0", "unused 7 7"]
    text = ("3 2\n" if header else "") + "\n".join(lines) + "\n"
    path = tmp_path / ("vec.txt.gz" if compress else "vec.txt")
    if compress:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    emb = nn.Embedding(3, 2)
    assert load_pretrained_embeddings(emb, path, {"the": 0, "movie": 1, "plot": 2}) == (2, 1)
    torch.testing.assert_close(emb.weight[1].detach(), torch.tensor([1.5, -2.0]))


def test_embedding_errors(tmp_path):
    emb = nn.Embedding(3, 2)
    before = emb.weight.detach().clone()
    bad = tmp_path / "bad.txt"
    bad.write_text("good 1 2 3\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: 'good' has 3 values, the embedding has 2"):
        load_pretrained_embeddings(emb, bad, ["good"])
    with pytest.raises(FileNotFoundError, match="not found"):
        load_pretrained_embeddings(emb, tmp_path / "missing.txt", ["good"])
    with pytest.raises(ValueError, match="out of range"):
        load_pretrained_embeddings(emb, {}, {"x": 7})
    with pytest.raises(ValueError, match=r"needs \(2,\)"):
        load_pretrained_embeddings(emb, {"a": [1.0]}, ["a"])
    torch.testing.assert_close(emb.weight.detach(), before)  # a refused load changes nothing


def test_identity_init_keeps_the_extra_filters_random():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.Conv2d(6, 3, 3, padding=1, bias=False),
                        nn.Conv2d(3, 3, 1), nn.Conv2d(4, 4, 3, groups=2))
    before = [m.weight.detach().clone() for m in net]
    assert identity_init_(net) == 2  # the 1x1 and the grouped convolution are left alone
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(net[0](x)[:, :4], x)  # the first min(in, out) filters pass through
    assert torch.equal(net[0].weight[4:], before[0][4:])  # the others keep their init
    y = torch.randn(2, 6, 5, 5)
    torch.testing.assert_close(net[1](y), y[:, :3])  # out < in: the first out channels pass
    assert torch.equal(net[2].weight, before[2]) and torch.equal(net[3].weight, before[3])
    with pytest.raises(ValueError, match="has no ungrouped odd square convolution"):
        identity_init_(nn.Sequential(nn.Linear(2, 2)))


@pytest.mark.parametrize("mode", ["pca", "zca"])
def test_patch_whitening_whitens_the_patches(mode):
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    x = torch.einsum("dc,nchw->ndhw", mix, torch.randn(200, 3, 6, 6, generator=gen, dtype=torch.float64))
    x = x + 0.5 * x.roll(1, dims=3)  # neighbouring pixels correlated too
    w = patch_whitening_weights(x, 2, eps=0.0, mode=mode)
    assert w.shape == (24, 3, 2, 2) and w.dtype == torch.float64
    assert torch.equal(w[12:], -w[:12])
    out = torch.nn.functional.conv2d(x, w[:12]).permute(1, 0, 2, 3).reshape(12, -1)
    torch.testing.assert_close(out @ out.T / out.shape[1], torch.eye(12, dtype=torch.float64), atol=1e-9, rtol=0)
    flat = w[:12].reshape(12, 12)
    if mode == "zca":
        torch.testing.assert_close(flat, flat.T)  # ZCA is symmetric
    else:  # PCA rows are orthogonal, largest eigenvalue (smallest scale) first
        norms = flat.norm(dim=1)
        assert (norms[:-1] <= norms[1:] + 1e-12).all()


def test_patch_whitening_init_checks_the_layer_and_freezes_it():
    x = torch.randn(16, 3, 8, 8)
    conv = nn.Conv2d(3, 24, 2)
    init_patch_whitening_(conv, x, trainable=False)
    assert not conv.weight.requires_grad and torch.equal(conv.bias, torch.zeros(24))
    torch.testing.assert_close(conv.weight, patch_whitening_weights(x, 2))
    with pytest.raises(ValueError, match=r"out_channels = 2 \* in \* k \* k; got in=3, out=16"):
        init_patch_whitening_(nn.Conv2d(3, 16, 2), x)
    with pytest.raises(ValueError, match="kernel_size must be an integer from 1 to 8, got 9"):
        patch_whitening_weights(x, 9)
