"""Augmentations against their definitions; seeds reproduce batches; CPU and CUDA agree."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trickbag import augment as A


def images(gen, n=6, c=3, h=10, w=12):
    return torch.rand(n, c, h, w, generator=gen)


def test_flipping_twice_is_the_identity_and_p_zero_does_nothing(gen):
    x = images(gen)
    for flip, dim in ((A.hflip, 3), (A.vflip, 2)):
        assert torch.equal(flip(flip(x, p=1.0), p=1.0), x)
        assert torch.equal(flip(x, p=1.0), x.flip(dim))
        assert torch.equal(flip(x, p=0.0), x)
        mixed = flip(x, p=0.5, generator=torch.Generator().manual_seed(3))
        per_image = [torch.equal(mixed[i], x[i]) or torch.equal(mixed[i], x[i].flip(dim - 1)) for i in range(len(x))]
        assert all(per_image)


def test_flip_probability_is_p():
    x = torch.arange(2.0).reshape(1, 1, 1, 2).expand(4000, 1, 1, 2)
    flipped = (A.hflip(x, p=0.3, generator=torch.Generator().manual_seed(0))[:, 0, 0, 0] == 1).float().mean()
    assert flipped.item() == pytest.approx(0.3, abs=0.03)


def test_cutout_zeroes_exactly_one_clipped_square(gen):
    x = torch.ones(400, 1, 20, 20)
    size = 8
    out = A.cutout(x, size, generator=torch.Generator().manual_seed(5))
    mask = A.cutout_mask(400, 20, 20, size, x, torch.Generator().manual_seed(5))
    assert torch.equal(out == 0, mask)
    clipped = 0
    for m in mask[:, 0]:
        rows = torch.nonzero(m.any(1)).flatten()
        cols = torch.nonzero(m.any(0)).flatten()
        assert m.sum() == len(rows) * len(cols)  # a filled rectangle
        assert len(rows) <= size and len(cols) <= size
        inside = rows.min() > 0 and rows.max() < 19 and cols.min() > 0 and cols.max() < 19
        if inside:
            assert len(rows) == size and len(cols) == size
        clipped += not inside
    assert 0 < clipped < 400  # centres near the border clip the square, as in the paper


def test_mixup_is_the_stated_convex_combination(gen):
    x, y = images(gen, n=7), torch.randint(0, 4, (7,), generator=gen)  # odd batch size
    m = A.mixup_batch(x, y, alpha=0.4, generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(7, generator=_after_beta(1, 0.4))
    torch.testing.assert_close(m.inputs, m.lam * x + (1 - m.lam) * x[perm])
    assert torch.equal(m.targets_a, y) and torch.equal(m.targets_b, y[perm])
    assert 0.0 <= m.lam.item() <= 1.0


def _after_beta(seed, alpha):
    """A generator in the state mixup_batch leaves it after drawing lam (two gammas)."""
    g = torch.Generator().manual_seed(seed)
    torch._standard_gamma(torch.full((2,), alpha), generator=g)
    return g


@pytest.mark.parametrize("alpha", [0.2, 0.5, 2.0])
def test_mixup_lam_follows_beta(alpha):
    """A Kolmogorov-Smirnov test against Beta(alpha, alpha), which the neighbouring Beta
    distributions (and any other symmetric law) fail."""
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    x, y = torch.zeros(2, 1, 2, 2), torch.zeros(2)
    lams = torch.stack([A.mixup_batch(x, y, alpha=alpha, generator=g).lam for _ in range(3000)]).double().numpy()
    assert stats.kstest(lams, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    for other in (alpha * 0.7, alpha * 1.4):
        assert stats.kstest(lams, stats.beta(other, other).cdf).pvalue < 1e-3


def test_mixup_of_integer_images_mixes_in_floating_point(gen):
    """uint8 images are mixed with the same lam as their labels, not with lam cast to 0."""
    x = (torch.rand(8, 3, 4, 4, generator=gen) * 255).to(torch.uint8)
    y = torch.arange(8)
    m = A.mixup_batch(x, y, alpha=1.0, generator=torch.Generator().manual_seed(2))
    assert m.inputs.dtype == torch.float32
    assert 0.05 < m.lam.item() < 0.95  # a real mix for this seed
    perm = m.targets_b
    torch.testing.assert_close(m.inputs, m.lam * x.double() + (1 - m.lam) * x[perm].double(), check_dtype=False)


def test_cutmix_lam_is_the_kept_area(gen):
    n = 16
    x = torch.arange(float(n))[:, None, None, None].expand(n, 2, 12, 12).clone()
    y = torch.arange(n)
    for seed in range(10):
        m = A.cutmix_batch(x, y, alpha=1.0, generator=torch.Generator().manual_seed(seed))
        own = (m.inputs == x).float().mean(dim=(1, 2, 3))
        moved = m.targets_b != y
        torch.testing.assert_close(own[moved], m.lam.expand(int(moved.sum())))


def test_mix_targets_with_soft_and_multilabel_targets(gen):
    x = images(gen, n=5)
    y = (torch.rand(5, 3, generator=gen) > 0.5).float()  # multi-label
    m = A.mixup_batch(x, y, alpha=1.0, generator=gen)
    torch.testing.assert_close(A.mix_targets(m), m.lam * y + (1 - m.lam) * m.targets_b)


def test_random_crop_equals_a_crop_of_the_padded_image(gen):
    x = images(gen)
    out = A.random_crop(x, 3, generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    oy = torch.randint(0, 7, (6,), generator=g)
    ox = torch.randint(0, 7, (6,), generator=g)
    padded = F.pad(x, (3, 3, 3, 3), mode="reflect")
    for i in range(6):
        assert torch.equal(out[i], padded[i, :, oy[i]:oy[i] + 10, ox[i]:ox[i] + 12])
    uint8 = (x * 255).to(torch.uint8)
    assert A.random_crop(uint8, 2).dtype == torch.uint8


def test_translate_moves_pixels_and_zero_fills(gen):
    x = images(gen, n=50)
    out = A.translate(x, 3, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    dy, dx = torch.randint(-3, 4, (50,), generator=g), torch.randint(-3, 4, (50,), generator=g)
    for i in range(50):
        ref = torch.zeros_like(x[i])
        sy, sx = int(dy[i]), int(dx[i])
        ref[:, max(sy, 0):10 + min(sy, 0), max(sx, 0):12 + min(sx, 0)] = x[i, :, max(-sy, 0):10 - max(sy, 0), max(-sx, 0):12 - max(sx, 0)]
        assert torch.equal(out[i], ref)


def test_rotation_by_right_angles_is_rot90(gen):
    x = images(gen, h=9, w=9)
    for k, deg in ((1, 90.0), (2, 180.0), (-1, -90.0)):
        out = A.rotate_by(x, torch.full((6,), deg), mode="nearest")
        assert torch.equal(out, torch.rot90(x, k=k, dims=(2, 3))), deg
    torch.testing.assert_close(A.rotate(x, 0.0), x, atol=1e-6, rtol=0)


def test_rotate_draws_angles_in_range(gen):
    x = torch.zeros(200, 1, 21, 21)
    x[:, 0, 10, 18] = 1.0  # a dot 8 pixels right of centre
    out = A.rotate(x, 30.0, mode="nearest", generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    angles = torch.rand(200, generator=g) * 60 - 30
    expected = A.rotate_by(x, angles, mode="nearest")
    assert torch.equal(out, expected)
    ys, xs = torch.nonzero(out[:, 0], as_tuple=True)[1:]
    measured = torch.rad2deg(torch.atan2(-(ys.float() - 10), xs.float() - 10))
    assert measured.abs().max() <= 30 + 8  # within the range, up to the pixel grid


def test_scale_identity_and_zoom(gen):
    x = images(gen)
    torch.testing.assert_close(A.scale(x, 1.0, 1.0), x, atol=1e-5, rtol=0)
    # A linear ramp f(row, col) = 100 row + col: bilinear sampling reproduces it exactly, so
    # zooming in by 2 about the centre must give f at c + (p - c) / 2 for every pixel centre p.
    h, w = 8, 10
    rows, cols = torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64)
    ramp = (100 * rows[:, None] + cols[None, :]).expand(2, 1, h, w)

    def zoom_in(k, n):  # the source coordinate of output pixel k, pixel centres at k + 0.5
        return n / 2 + (k + 0.5 - n / 2) / 2 - 0.5

    expected = 100 * zoom_in(rows, h)[:, None] + zoom_in(cols, w)[None, :]
    torch.testing.assert_close(A.scale(ramp, 2.0, 2.0), expected.expand(2, 1, h, w), atol=1e-9, rtol=0)


def test_gaussian_noise_statistics():
    out = A.gaussian_noise(torch.zeros(1, 1, 300, 300), 0.2, generator=torch.Generator().manual_seed(0))
    assert out.mean().item() == pytest.approx(0.0, abs=0.005)
    assert out.std().item() == pytest.approx(0.2, rel=0.02)


@pytest.mark.parametrize(
    "op",
    [
        lambda x, g: A.hflip(x, generator=g),
        lambda x, g: A.rotate(x, 15.0, generator=g),
        lambda x, g: A.translate(x, 2, generator=g),
        lambda x, g: A.scale(x, 0.8, 1.2, generator=g),
        lambda x, g: A.random_crop(x, 2, generator=g),
        lambda x, g: A.gaussian_noise(x, 0.1, generator=g),
        lambda x, g: A.cutout(x, 4, generator=g),
        lambda x, g: A.mixup_batch(x, torch.arange(len(x)), alpha=0.3, generator=g).inputs,
        lambda x, g: A.cutmix_batch(x, torch.arange(len(x)), alpha=1.0, generator=g).inputs,
    ],
)
def test_same_seed_same_batch(gen, op):
    x = images(gen)
    a = op(x, torch.Generator().manual_seed(11))
    b = op(x, torch.Generator().manual_seed(11))
    c = op(x, torch.Generator().manual_seed(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_compose_and_build_augment(gen):
    x = images(gen, h=16, w=16)
    pipe = A.build_augment(["hflip", {"random_crop": {"padding": 2}}, {"cutout": {"size": 4}}])
    assert len(pipe) == 3
    a = pipe(x, generator=torch.Generator().manual_seed(0))
    b = pipe(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    g = torch.Generator().manual_seed(0)
    manual = A.cutout(A.random_crop(A.hflip(x, generator=g), 2, generator=g), 4, generator=g)
    assert torch.equal(a, manual)
    assert A.build_augment([]) is None
    with pytest.raises(ValueError, match="unknown augmentation 'cut_out'; did you mean 'cutout'"):
        A.build_augment(["cut_out"])
    with pytest.raises(ValueError, match="augmentation 'cutout'"):
        A.build_augment([{"cutout": {"sz": 4}}])


def test_normalizer_matches_torch_statistics(gen):
    x = torch.randint(0, 256, (300, 3, 6, 6), dtype=torch.uint8, generator=gen)
    norm = A.fit_normalizer(x, chunk=64)
    ref = x.double() / 255
    torch.testing.assert_close(norm.mean.flatten().double(), ref.mean(dim=(0, 2, 3)), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(norm.std.flatten().double(), ref.std(dim=(0, 2, 3), unbiased=False), rtol=1e-5, atol=1e-6)
    z = norm(x)
    torch.testing.assert_close(norm.inverse(z), x.float(), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="constant over the whole data set"):
        A.fit_normalizer(torch.zeros(4, 1, 2, 2))
    with pytest.raises(ValueError, match="Normalizer for 3 channels got shape"):
        norm(torch.zeros(2, 1, 6, 6))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: A.hflip(torch.zeros(3, 4, 4)), r"\(N, C, H, W\)"),
        (lambda: A.hflip(torch.zeros(1, 1, 4, 4), p=1.5), r"p must be in \[0.0, 1.0\], got 1.5"),
        (lambda: A.cutout(torch.zeros(1, 1, 4, 4), 0), "size must be an integer >= 1, got 0"),
        (lambda: A.mixup_batch(torch.zeros(2, 1, 2, 2), torch.zeros(3), alpha=0.2), "batch size: 2 vs 3"),
        (lambda: A.mixup_batch(torch.zeros(2, 1, 2, 2), torch.zeros(2), alpha=0.0), "alpha must be > 0"),
        (lambda: A.rotate(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 10.0), "floating-point"),
        (lambda: A.scale(torch.zeros(1, 1, 4, 4), 1.2, 0.8), "max_scale must be >= min_scale"),
        (lambda: A.translate(torch.zeros(1, 1, 4, 4), -1), "max_pixels must be an integer >= 0"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["hflip", "rotate", "translate", "scale", "random_crop", "cutout", "mixup", "cutmix", "noise"])
def test_cpu_and_cuda_agree(gen, name):
    x = images(gen, n=8, h=16, w=16)
    y = torch.arange(8)
    ops = {
        "hflip": lambda t, g: A.hflip(t, generator=g),
        "rotate": lambda t, g: A.rotate(t, 20.0, generator=g),
        "translate": lambda t, g: A.translate(t, 3, generator=g),
        "scale": lambda t, g: A.scale(t, 0.8, 1.3, generator=g),
        "random_crop": lambda t, g: A.random_crop(t, 4, generator=g),
        "cutout": lambda t, g: A.cutout(t, 6, generator=g),
        "mixup": lambda t, g: A.mixup_batch(t, y.to(t.device), alpha=0.4, generator=g).inputs,
        "cutmix": lambda t, g: A.cutmix_batch(t, y.to(t.device), alpha=1.0, generator=g).inputs,
        "noise": lambda t, g: A.gaussian_noise(t, 0.1, generator=g),
    }
    cpu = ops[name](x, torch.Generator().manual_seed(0))
    cuda = ops[name](x.cuda(), torch.Generator().manual_seed(0))
    assert cuda.is_cuda
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=1e-5, atol=1e-5)


def test_alternating_flip_mirrors_each_image_every_other_epoch(gen):
    x = images(gen, n=400, h=4, w=5)
    idx = torch.arange(1000, 1400)
    outs = [A.alternating_flip(x, idx, e, seed=3) for e in range(4)]
    flipped = [(o == x.flip(3)).all(dim=(1, 2, 3)) for o in outs]
    for o, f in zip(outs, flipped):
        assert torch.equal(o[f], x.flip(3)[f]) and torch.equal(o[~f], x[~f])  # mirrored or untouched
    assert (flipped[0] != flipped[1]).all() and torch.equal(flipped[0], flipped[2])
    assert flipped[0].float().mean().item() == pytest.approx(0.5, abs=0.08)  # half start mirrored
    other = (A.alternating_flip(x, idx, 0, seed=4) == x.flip(3)).all(dim=(1, 2, 3))
    assert 0.3 < (other == flipped[0]).float().mean().item() < 0.7  # the seed reshuffles the bits
    # the flip belongs to the example, not to its position in the batch
    perm = torch.randperm(400, generator=gen)
    torch.testing.assert_close(A.alternating_flip(x[perm], idx[perm], 1, seed=3), outs[1][perm])


def test_the_loader_passes_indices_and_epochs_to_alternating_flip():
    from trickbag.data import ArrayDataset, DeviceLoader, TorchLoader

    x = torch.arange(64.0).reshape(8, 1, 2, 4)  # image i is distinct from its mirror
    data = ArrayDataset(x, torch.arange(8))
    loader = DeviceLoader(data, 3, seed=5, augment=A.Compose([A.AlternatingFlip(seed=1)]), drop_last=False)
    seen = {}
    for epoch in range(2):
        for xb, yb in loader:
            for img, label in zip(xb, yb):
                seen[(epoch, int(label))] = torch.equal(img, x[label].flip(2))
    assert len(seen) == 16
    assert all(seen[(0, i)] != seen[(1, i)] for i in range(8))
    with pytest.raises(ValueError, match="needs each example's index"):
        TorchLoader(data, 3, augment=A.AlternatingFlip())
    with pytest.raises(ValueError, match="needs each image's index and the epoch"):
        A.AlternatingFlip()(x)
    from trickbag.train.callbacks import Augment

    with pytest.raises(ValueError, match="give it to the DeviceLoader's augment"):
        Augment(A.AlternatingFlip())


def test_alternating_flip_follows_the_run_seed_unless_pinned():
    """The flip bits come from the loader's seed (the run's train.seed) by default, so runs with
    other seeds mirror other halves; a pinned seed keeps one pattern (fails before: every run used
    seed 0's bits)."""
    from trickbag.data import ArrayDataset, DeviceLoader

    x = torch.arange(64 * 8.0).reshape(64, 1, 2, 4)
    data = ArrayDataset(x, torch.arange(64))

    def pattern(loader_seed: int, flip: A.AlternatingFlip) -> torch.Tensor:
        loader = DeviceLoader(data, 64, seed=loader_seed, augment=flip, shuffle=False)
        xb, _ = next(iter(loader))
        return (xb == x.flip(3)).all(dim=(1, 2, 3))

    a, b = pattern(0, A.AlternatingFlip()), pattern(1, A.AlternatingFlip())
    assert not torch.equal(a, b)
    # the default equals the functional form at the loader's seed
    from trickbag.augment.geometric import alternating_flip

    assert torch.equal(a, (alternating_flip(x, torch.arange(64), 0, seed=0) == x.flip(3)).all(dim=(1, 2, 3)))
    assert torch.equal(b, (alternating_flip(x, torch.arange(64), 0, seed=1) == x.flip(3)).all(dim=(1, 2, 3)))
    # a pinned seed ignores the loader's
    assert torch.equal(pattern(0, A.AlternatingFlip(seed=7)), pattern(1, A.AlternatingFlip(seed=7)))
    with pytest.raises(ValueError, match="seed must be an integer or None"):
        A.AlternatingFlip(seed="1")
