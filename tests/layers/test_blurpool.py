"""BlurPool against a direct depthwise convolution, model surgery, and shift consistency."""

from __future__ import annotations

import copy
import logging
from math import comb

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trickbag.layers import BlurPool2d, apply_blurpool, binomial_filter, blur_pool2d


def reference_filter(size: int) -> torch.Tensor:
    """The normalised 2-D binomial filter from Pascal's triangle, independent of trickbag."""
    row = torch.tensor([comb(size - 1, i) for i in range(size)], dtype=torch.float64)
    return torch.outer(row, row) / row.sum() ** 2


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 7])
def test_filters_are_normalised_binomials(size):
    torch.testing.assert_close(binomial_filter(size).double(), reference_filter(size), rtol=1e-6, atol=1e-7)


def test_blur_pool_by_hand():
    """A 3x3 blur with stride 2 on a 4x4 image, element by element with reflect padding."""
    x = torch.arange(16.0).reshape(1, 1, 4, 4) ** 2  # not linear: a blur changes it
    k = [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]]

    def reflect(i):
        return -i if i < 0 else 6 - i if i > 3 else i

    expected = torch.zeros(1, 1, 2, 2)
    for oi, i in enumerate((0, 2)):
        for oj, j in enumerate((0, 2)):
            expected[0, 0, oi, oj] = sum(k[a][b] * x[0, 0, reflect(i + a - 1), reflect(j + b - 1)]
                                         for a in range(3) for b in range(3))
    torch.testing.assert_close(blur_pool2d(x, filt_size=3, stride=2), expected)


@pytest.mark.parametrize("size", [2, 3, 4, 5, 7])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_equals_depthwise_conv_after_reflect_padding(gen, size, stride):
    x = torch.randn(2, 5, 13, 16, generator=gen)
    lo, hi = (size - 1) // 2, size // 2
    weight = reference_filter(size).float().expand(5, 1, size, size)
    expected = F.conv2d(F.pad(x, (lo, hi, lo, hi), mode="reflect"), weight, stride=stride, groups=5)
    torch.testing.assert_close(BlurPool2d(5, filt_size=size, stride=stride)(x), expected)


def test_filt_size_one_is_subsampling(gen):
    x = torch.randn(1, 2, 9, 9, generator=gen)
    torch.testing.assert_close(blur_pool2d(x, filt_size=1, stride=2), x[:, :, ::2, ::2])


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    )


def test_surgery_keeps_shapes_and_reports_replacements(caplog):
    torch.manual_seed(0)
    plain = small_cnn()
    x = torch.randn(4, 3, 32, 32)
    with caplog.at_level(logging.INFO, logger="trickbag"):
        aa = apply_blurpool(small_cnn())
    assert aa.blurpool_replaced == ["2 (MaxPool2d stride 2)", "3 (Conv2d stride 2)", "7 (AvgPool2d stride 2)"]
    assert "replaced 3 layers" in caplog.text
    assert aa(x).shape == plain(x).shape
    conv = aa[3][0]
    assert conv.stride == (1, 1) and isinstance(aa[3][1], BlurPool2d)
    assert aa[2][0].stride == 1 and isinstance(aa[2][1], BlurPool2d)
    with pytest.warns(UserWarning, match="found no strided"):
        apply_blurpool(nn.Sequential(nn.Linear(2, 2)))


def test_antialiased_cnn_is_more_shift_consistent():
    """The paper's consistency metric: P(same class for two random diagonal shifts).

    Random networks have a dominant output bias (one class for nearly every input, trivially
    "consistent"), so each logit is standardised over the data set first; then predictions
    spread over all classes and the metric measures input-dependent behaviour.
    """
    torch.manual_seed(0)
    plain = small_cnn().eval()
    aa = apply_blurpool(copy.deepcopy(plain)).eval()  # identical weights; only the downsampling differs
    gen = torch.Generator().manual_seed(1)
    n = 512
    base = F.avg_pool2d(torch.randn(n, 3, 40, 40, generator=gen), 3, stride=1, padding=1)
    offsets = torch.randint(0, 8, (2, n), generator=gen)

    def crops(off):
        idx = off[:, None] + torch.arange(32)[None, :]
        return base[torch.arange(n)[:, None, None, None], torch.arange(3)[None, :, None, None],
                    idx[:, None, :, None], idx[:, None, None, :]]

    a, b = crops(offsets[0]), crops(offsets[1])

    def consistency(model):
        with torch.no_grad():
            la, lb = model(a), model(b)
        mu, sd = la.mean(0), la.std(0)
        pa, pb = ((la - mu) / sd).argmax(1), ((lb - mu) / sd).argmax(1)
        assert len(torch.unique(pa)) >= 8  # predictions depend on the input
        return (pa == pb).float().mean().item()

    c_plain, c_aa = consistency(plain), consistency(aa)
    assert c_aa > c_plain + 0.05, (c_plain, c_aa)


def test_bad_arguments():
    with pytest.raises(ValueError, match="filt_size must be an integer from 1 to 7, got 9"):
        BlurPool2d(4, filt_size=9)
    with pytest.raises(ValueError, match="unknown pad_mode 'circular'"):
        BlurPool2d(4, pad_mode="circular")
    with pytest.raises(ValueError, match=r"BlurPool2d\(4\) got 3 channels"):
        BlurPool2d(4)(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"expects \(N, C, H, W\)"):
        blur_pool2d(torch.randn(3, 8, 8))
