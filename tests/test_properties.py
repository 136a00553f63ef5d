"""Property-based sweep (Hypothesis): losses, schedules and augmentations over dtypes, devices,
shapes (batch of one, odd sizes) and extreme values, each against a float64 reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a dev dependency (pip install -e .[dev])")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from trickbag import augment as A  # noqa: E402
from trickbag import schedules as S  # noqa: E402
from trickbag.losses import (  # noqa: E402
    LabelSmoothingCrossEntropy,
    flood,
    focal_loss,
    sigmoid_focal_loss,
    soft_target_cross_entropy,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
SWEEP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

# Relative error of one rounding to each dtype; a computation in float32 from rounded inputs
# and a final rounding to the input dtype stays within a few of these.
EPS = {torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float32: 1e-6, torch.float64: 1e-11}


def _close(got: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> None:
    tol = 8 * EPS[dtype]
    torch.testing.assert_close(got.double().cpu(), expected.double().cpu(), rtol=tol, atol=tol * scale)


@st.composite
def logits_and_targets(draw, max_classes: int = 7):
    n = draw(st.integers(1, 9))  # a batch of one included
    c = draw(st.integers(2, max_classes))
    magnitude = draw(st.sampled_from([1e-3, 1.0, 30.0, 1e4]))  # extreme logits too
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) * magnitude
    target = torch.randint(0, c, (n,), generator=g)
    return logits, target


def _reference_focal(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-example focal loss in float64 from the definition, in a stable form."""
    log_pt = F.log_softmax(logits.double(), 1).gather(1, target[:, None]).squeeze(1)
    return -((-torch.expm1(log_pt)) ** gamma) * log_pt


# ---- losses -------------------------------------------------------------------------------


@SWEEP
@given(data=logits_and_targets(), gamma=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 5.0]),
       dtype=st.sampled_from(FLOATS), device=st.sampled_from(DEVICES))
def test_focal_loss_against_float64(data, gamma, dtype, device):
    logits, target = data
    x = logits.to(dtype)
    if not torch.isfinite(x).all():  # 1e4 does not fit in fp16: not a valid input
        return
    x = x.to(device).requires_grad_(True)
    loss = focal_loss(x, target.to(device), gamma=gamma, reduction="none")
    assert loss.dtype == dtype
    expected = _reference_focal(x.detach().double(), target.to(device), gamma)
    _close(loss, expected, dtype, scale=max(1.0, expected.abs().max().item()))
    loss.sum().backward()
    assert torch.isfinite(x.grad).all()


@SWEEP
@given(data=logits_and_targets(), gamma=st.sampled_from([0.0, 0.3, 0.9, 2.0]), alpha=st.sampled_from([-1.0, 0.25, 0.9]),
       dtype=st.sampled_from([torch.float32, torch.float64]), device=st.sampled_from(DEVICES))
def test_sigmoid_focal_loss_against_float64(data, gamma, alpha, dtype, device):
    logits, target = data
    labels = F.one_hot(target, logits.shape[1]).double()
    x = logits.to(dtype).to(device).requires_grad_(True)
    loss = sigmoid_focal_loss(x, labels.to(dtype).to(device), gamma=gamma, alpha=alpha)
    assert loss.dtype == dtype
    z = x.detach().double() * (2 * labels.to(device) - 1)  # the margin
    alpha_t = 1.0 if alpha < 0 else alpha * labels.to(device) + (1 - alpha) * (1 - labels.to(device))
    expected = alpha_t * F.softplus(-z) * torch.sigmoid(-z) ** gamma
    _close(loss, expected, dtype)
    loss.sum().backward()
    assert torch.isfinite(x.grad).all()


@SWEEP
@given(data=logits_and_targets(), eps=st.sampled_from([0.0, 0.1, 0.5, 0.9]), dtype=st.sampled_from(FLOATS),
       reduction=st.sampled_from(["mean", "sum", "none"]), device=st.sampled_from(DEVICES))
def test_label_smoothing_against_float64(data, eps, dtype, reduction, device):
    logits, target = data
    x = logits.to(dtype)
    if not torch.isfinite(x).all():
        return
    x, target = x.to(device), target.to(device)
    got = LabelSmoothingCrossEntropy(eps, reduction=reduction)(x, target)
    c = x.shape[1]
    soft = F.one_hot(target, c).double() * (1 - eps) + eps / c
    per = -(soft * F.log_softmax(x.double(), 1)).sum(1)
    expected = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    _close(got, expected, dtype, scale=max(1.0, expected.abs().max().item()) * 8)
    # soft targets take the same path
    got_soft = soft_target_cross_entropy(x.double(), soft, reduction=reduction)
    torch.testing.assert_close(got_soft, expected)


@SWEEP
@given(values=st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=5),
       b=st.floats(0.0, 10.0), dtype=st.sampled_from(FLOATS))
def test_flooding_is_the_reflection_about_b(values, b, dtype):
    loss = torch.tensor(values, dtype=torch.float64).to(dtype)
    if not torch.isfinite(loss).all():
        return
    got = flood(loss, b)
    assert got.dtype == dtype
    expected = (loss.double() - b).abs() + b
    _close(got, expected, dtype, scale=max(1.0, expected.abs().max().item()))


# ---- schedules ------------------------------------------------------------------------------


SCHEDULES = st.one_of(
    st.builds(S.cosine_decay, st.integers(1, 10**6), floor=st.floats(0, 1)),
    st.builds(S.linear_decay, st.integers(1, 10**6), floor=st.floats(0, 1)),
    st.builds(S.linear_warmup, st.integers(1, 10**5), start=st.floats(0, 1)),
    st.builds(S.inverse_sqrt, st.integers(1, 10**5)),
    st.builds(S.cyclic_cosine, st.integers(1, 10**5), floor=st.floats(0, 1)),
    st.builds(S.sgdr, st.integers(1, 10**4), cycle_mult=st.integers(1, 4), floor=st.floats(0, 1)),
    st.builds(lambda c, m, w, g, f: S.warmup_cosine_restarts(c, cycle_mult=m, warmup_steps=min(w, c - 1), gamma=g, floor=f),
              st.integers(1, 10**4), st.integers(1, 4), st.integers(0, 10**3), st.floats(0.01, 1), st.floats(0, 1)),
    st.builds(S.one_cycle, st.integers(10, 10**6)),
    st.builds(S.step_decay, st.integers(1, 10**5), st.floats(0.01, 1)),
    st.builds(S.exponential, st.floats(0.5, 1.0)),
)


@SWEEP
@given(schedule=SCHEDULES, step=st.one_of(st.integers(0, 50), st.integers(0, 10**9)))
def test_every_schedule_is_a_finite_multiplier_in_0_1(schedule, step):
    value = schedule(step)
    assert isinstance(value, float) and math.isfinite(value)
    assert -1e-12 <= value <= 1.0 + 1e-9, (schedule, step, value)


@SWEEP
@given(T_0=st.integers(1, 40), mult=st.integers(1, 3), eta_min=st.floats(0.0, 0.5))
def test_sgdr_against_torchs_scheduler(T_0, mult, eta_min):
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=1.0)
    ref = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0, T_mult=mult, eta_min=eta_min)
    s = S.sgdr(T_0, cycle_mult=mult, floor=eta_min)
    for step in range(200):
        assert s(step) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-9), step
        opt.step()
        ref.step()


@SWEEP
@given(T_0=st.integers(2, 30), mult=st.integers(1, 3), up=st.integers(0, 29), gamma=st.floats(0.1, 1.0),
       floor=st.floats(0, 0.5))
def test_warmup_cosine_restarts_against_the_step_rule(T_0, mult, up, gamma, floor):
    up = min(up, T_0 - 1)
    s = S.warmup_cosine_restarts(T_0, cycle_mult=mult, warmup_steps=up, gamma=gamma, floor=floor)
    T_i, T_cur, cycle = T_0, 0, 0
    for step in range(250):
        peak = gamma**cycle
        if T_cur < up:
            expected = floor + (peak - floor) * T_cur / up
        else:
            expected = floor + (peak - floor) * (1 + math.cos(math.pi * (T_cur - up) / (T_i - up))) / 2
        assert s(step) == pytest.approx(expected, abs=1e-12), step
        T_cur += 1
        if T_cur >= T_i:
            cycle, T_cur, T_i = cycle + 1, T_cur - T_i, (T_i - up) * mult + up


# ---- augmentations ------------------------------------------------------------------------

IMAGE_DTYPES = [torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64]


@st.composite
def image_batches(draw, dtypes=IMAGE_DTYPES):
    n = draw(st.integers(1, 5))
    c = draw(st.sampled_from([1, 3]))
    h = draw(st.integers(1, 9))
    w = draw(st.integers(1, 9))
    dtype = draw(st.sampled_from(dtypes))
    device = draw(st.sampled_from(DEVICES))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    else:
        x = (torch.randn(n, c, h, w, generator=g, dtype=torch.float64) * draw(st.sampled_from([1e-3, 1.0, 1e3]))).to(dtype)
    return x.to(device), seed


@SWEEP
@given(batch=image_batches(), p=st.sampled_from([0.0, 0.5, 1.0]))
def test_flips_are_exact_per_image(batch, p):
    x, seed = batch
    for fn, dim in ((A.hflip, 3), (A.vflip, 2)):
        out = fn(x, p=p, generator=torch.Generator().manual_seed(seed))
        assert out.dtype == x.dtype and out.shape == x.shape
        for i in range(x.shape[0]):
            assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(dim - 1))
        if p == 1.0:
            assert torch.equal(out, x.flip(dim))


@SWEEP
@given(batch=image_batches(), padding=st.integers(0, 4))
def test_random_crop_is_a_window_of_the_padded_image(batch, padding):
    x, seed = batch
    h, w = x.shape[2:]
    mode = "zeros" if padding >= min(h, w) else "reflect"  # reflect needs padding < size
    out = A.random_crop(x, padding, pad_mode=mode, generator=torch.Generator().manual_seed(seed))
    assert out.dtype == x.dtype and out.shape == x.shape
    padded = F.pad(x.double(), (padding,) * 4, mode="constant" if mode == "zeros" else "reflect")
    for i in range(x.shape[0]):
        windows = [padded[i, :, a:a + h, b:b + w] for a in range(2 * padding + 1) for b in range(2 * padding + 1)]
        assert any(torch.equal(out[i].double(), win) for win in windows)


@SWEEP
@given(batch=image_batches(), size=st.integers(1, 6))
def test_cutout_only_zeroes_one_clipped_square(batch, size):
    x, seed = batch
    out = A.cutout(x, size, generator=torch.Generator().manual_seed(seed))
    assert out.dtype == x.dtype and out.shape == x.shape
    changed = (out != x).any(1)
    assert (out[(out != x)] == 0).all()
    for m in changed:
        if m.any():
            rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
            assert len(rows) <= size and len(cols) <= size


@SWEEP
@given(batch=image_batches(), alpha=st.sampled_from([0.1, 0.4, 1.0, 4.0]))
def test_mixup_against_float64(batch, alpha):
    x, seed = batch
    y = torch.arange(x.shape[0], device=x.device)
    m = A.mixup_batch(x, y, alpha=alpha, generator=torch.Generator().manual_seed(seed))
    assert m.inputs.dtype == (x.dtype if x.is_floating_point() else torch.float32)
    perm = m.targets_b
    lam = m.lam.double()
    expected = lam * x.double() + (1 - lam) * x[perm].double()
    dtype = m.inputs.dtype
    _close(m.inputs, expected, dtype, scale=max(1.0, x.double().abs().max().item()))
    assert 0.0 <= m.lam.item() <= 1.0


@SWEEP
@given(batch=image_batches(), alpha=st.sampled_from([0.2, 1.0]))
def test_cutmix_takes_every_pixel_from_the_image_or_its_partner(batch, alpha):
    x, seed = batch
    y = torch.arange(x.shape[0], device=x.device)
    m = A.cutmix_batch(x, y, alpha=alpha, generator=torch.Generator().manual_seed(seed))
    assert m.inputs.dtype == x.dtype
    partner = x[m.targets_b]
    assert ((m.inputs == x) | (m.inputs == partner)).all()
    own = (m.inputs == x).all(1).double().mean((1, 2))  # fraction of own pixels
    moved = (x != partner).any(1).all((1, 2))  # images whose every pixel differs from the partner's
    if moved.any():
        torch.testing.assert_close(own[moved], m.lam.double().expand(int(moved.sum())).cpu().to(own.device))


@SWEEP
@given(batch=image_batches(dtypes=[torch.float32, torch.float64]), shift=st.integers(0, 3))
def test_translate_keeps_values_or_zero_fills(batch, shift):
    x, seed = batch
    out = A.translate(x, shift, generator=torch.Generator().manual_seed(seed))
    assert out.dtype == x.dtype and out.shape == x.shape
    values = set(x.flatten().tolist()) | {0.0}
    assert set(out.flatten().tolist()) <= values


@pytest.mark.parametrize("fn", [lambda x: A.rotate(x, 10.0), lambda x: A.scale(x, 0.9, 1.1),
                                lambda x: A.gaussian_noise(x, 0.1)], ids=["rotate", "scale", "noise"])
def test_interpolating_augmentations_refuse_integer_images_by_name(fn):
    with pytest.raises(ValueError, match="uint8"):
        fn(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
