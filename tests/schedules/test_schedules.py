"""Schedules against torch's own schedulers and float64 closed forms."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch.optim import lr_scheduler as L

from trickbag import schedules as S


def torch_lrs(make, steps, base=0.1):
    """Learning rates a torch scheduler gives for the first ``steps`` updates."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def ours(schedule, steps, base=0.1):
    return [base * schedule(s) for s in range(steps)]


def close(a, b, tol=1e-9):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert x == pytest.approx(y, rel=tol, abs=tol), f"step {i}: {x} != {y}"


@pytest.mark.parametrize("pct, anneal, three", [(0.3, "cos", False), (0.25, "linear", False), (0.2, "cos", True)])
def test_one_cycle_equals_torch(pct, anneal, three):
    T = 97
    ref = torch_lrs(lambda o: L.OneCycleLR(o, max_lr=0.1, total_steps=T, pct_start=pct, anneal_strategy=anneal,
                                           three_phase=three, cycle_momentum=False), T)
    close(ours(S.one_cycle(T, pct_start=pct, anneal=anneal, three_phase=three), T), ref)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_triangular_equals_torch_cycliclr(mode):
    T = 70
    ref = torch_lrs(lambda o: L.CyclicLR(o, base_lr=0.02, max_lr=0.1, step_size_up=9, mode=mode, gamma=0.99,
                                         cycle_momentum=False), T)
    close(ours(S.triangular(0.2, 1.0, 9, mode=mode, gamma=0.99), T), ref)


@pytest.mark.parametrize("mult", [1, 2, 3])
def test_sgdr_equals_torch_warm_restarts(mult):
    T = 120
    ref = torch_lrs(lambda o: L.CosineAnnealingWarmRestarts(o, T_0=7, T_mult=mult, eta_min=0.01), T)
    close(ours(S.sgdr(7, cycle_mult=mult, floor=0.1), T), ref)


def test_staircases_equal_torch():
    T = 50
    close(ours(S.step_decay(7, 0.5), T), torch_lrs(lambda o: L.StepLR(o, 7, 0.5), T))
    close(ours(S.multistep([10, 25], 0.1), T), torch_lrs(lambda o: L.MultiStepLR(o, [10, 25], 0.1), T))
    close(ours(S.exponential(0.95), T), torch_lrs(lambda o: L.ExponentialLR(o, 0.95), T))


def test_closed_forms():
    T = 40
    for s in range(T + 5):
        f = min(s, T) / T
        assert S.cosine_decay(T, 0.1)(s) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * f)))
        assert S.linear_decay(T, 0.1)(s) == pytest.approx(1 - 0.9 * f)
        assert S.linear_warmup(8, start=0.2)(s) == pytest.approx(0.2 + 0.8 * min(s / 8, 1))
        assert S.inverse_sqrt(8)(s) == pytest.approx(s / 8 if s < 8 else math.sqrt(8 / s))


def test_cyclic_cosine_starts_each_cycle_at_one_and_ends_at_the_floor():
    C, floor = 10, 0.05
    s = S.cyclic_cosine(C, floor=floor)
    for cycle in range(3):
        assert s(cycle * C) == 1.0
        assert s(cycle * C + C - 1) == pytest.approx(floor, abs=1e-12)
        values = [s(cycle * C + t) for t in range(C)]
        assert values == sorted(values, reverse=True)
    t = 3
    assert s(t) == pytest.approx(floor + (1 - floor) * (1 + math.cos(math.pi * t / (C - 1))) / 2)


class _CosineAnnealingWarmUpRestarts:
    """The widely copied scheduler's step-by-step update, written out as its code does it
    (T_cur counts steps in the cycle; at a restart T_i = (T_i - T_up) * T_mult + T_up; the
    floor is the optimizer's base lr), independent of trickbag's closed form."""

    def __init__(self, T_0, T_mult, eta_max, T_up, gamma, base_lr):
        self.T_i, self.T_mult, self.T_up, self.gamma = T_0, T_mult, T_up, gamma
        self.base_eta_max, self.eta_max, self.base_lr = eta_max, eta_max, base_lr
        self.T_cur, self.cycle = 0, 0

    def lr(self):
        if self.T_cur < self.T_up:
            return (self.eta_max - self.base_lr) * self.T_cur / self.T_up + self.base_lr
        frac = (self.T_cur - self.T_up) / (self.T_i - self.T_up)
        return self.base_lr + (self.eta_max - self.base_lr) * (1 + math.cos(math.pi * frac)) / 2

    def step(self):
        self.T_cur += 1
        if self.T_cur >= self.T_i:
            self.cycle += 1
            self.T_cur -= self.T_i
            self.T_i = (self.T_i - self.T_up) * self.T_mult + self.T_up
        self.eta_max = self.base_eta_max * self.gamma**self.cycle


@pytest.mark.parametrize("T_0, mult, up, gamma, floor", [(10, 2, 2, 0.5, 0.1), (7, 3, 3, 0.8, 0.0), (6, 1, 2, 1.0, 0.2),
                                                          (5, 2, 0, 0.9, 0.0)])
def test_warmup_cosine_restarts_equals_the_reference_scheduler(T_0, mult, up, gamma, floor):
    s = S.warmup_cosine_restarts(T_0, cycle_mult=mult, warmup_steps=up, gamma=gamma, floor=floor)
    ref = _CosineAnnealingWarmUpRestarts(T_0, mult, 1.0, up, gamma, floor)
    for step in range(300):
        assert s(step) == pytest.approx(ref.lr(), abs=1e-12), step
        ref.step()


def test_warmup_cosine_restarts_grows_only_the_cosine_part():
    s = S.warmup_cosine_restarts(10, cycle_mult=2, warmup_steps=2, gamma=0.5, floor=0.1)
    restarts = [t for t in range(1, 120) if s(t) == pytest.approx(0.1) and s(t) < s(t - 1)]
    assert restarts == [10, 28, 62]  # cycles of 10, 2 + 8*2 = 18, 2 + 8*4 = 34 steps


def test_join_restarts_the_step_count():
    s = S.join([S.constant(0.5), S.linear_warmup(4), S.constant(0.25)], [3, 7])
    assert [s(i) for i in range(9)] == [0.5, 0.5, 0.5, 0.0, 0.25, 0.5, 0.75, 0.25, 0.25]
    w = S.warmup_cosine(20, warmup_steps=5, floor=0.0)
    ref = S.join([S.linear_warmup(5), S.cosine_decay(15)], [5])
    assert [w(i) for i in range(25)] == [ref(i) for i in range(25)]


def test_to_lr_scheduler_state_dict_round_trips_with_weights_only():
    schedule = S.warmup_cosine(30, warmup_steps=5)

    def make():
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.2)
        return opt, S.to_lr_scheduler(opt, schedule)

    opt, sched = make()
    for _ in range(11):
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt2, sched2 = make()
    sched2.load_state_dict(state)
    for _ in range(5):
        opt.step(); sched.step(); opt2.step(); sched2.step()
        assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2 * schedule(16))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: S.cyclic_cosine(0), "cycle_steps must be an integer >= 2, got 0"),
        (lambda: S.cyclic_cosine(-5), "cycle_steps must be an integer >= 2, got -5"),
        (lambda: S.sgdr(0), "cycle_steps must be an integer >= 1, got 0"),
        (lambda: S.sgdr(5, cycle_mult=0), "cycle_mult must be an integer >= 1"),
        (lambda: S.cosine_decay(100, floor=1.5), r"floor must be in \[0.0, 1.0\], got 1.5"),
        (lambda: S.step_decay(5, 0.0), r"factor must be in \(0.0, 1.0\]"),
        (lambda: S.multistep([5, 3]), "milestones must be increasing"),
        (lambda: S.triangular(1.0, 0.5, 3), "peak must be >= base"),
        (lambda: S.triangular(0.1, 1.0, 3, mode="tri"), "unknown mode 'tri'"),
        (lambda: S.warmup_cosine_restarts(5, warmup_steps=5), r"warmup_steps must be an integer in \[0, cycle_steps=5\)"),
        (lambda: S.join([S.constant()], [3]), "one boundary fewer than schedules"),
        (lambda: S.one_cycle(10, pct_start=1.2), r"pct_start must be in \(0.0, 1.0\)"),
        (lambda: S.one_cycle(4, pct_start=0.25), "the warm-up needs more than one step"),
        (lambda: S.linear_warmup(4)(-1), "step must be >= 0, got -1"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_one_cycle_convention_against_airbench_triangle():
    """The card's statement: torch's OneCycleLR convention (peak at pct_start * T - 1, last step at
    the final value) against airbench94's triangle over T + 1 grid points (peak at int(0.23 * 476))."""
    import numpy as np

    from trickbag.schedules import one_cycle

    s = one_cycle(475, pct_start=0.23, div_factor=5.0, final_div_factor=0.2 / 0.07, anneal="linear")
    ours = np.array([s(i) for i in range(475)])
    triangle = np.interp(np.arange(477), [0, int(0.23 * 476), 476], [0.2, 1.0, 0.07])[:475]
    assert ours[0] == pytest.approx(0.2) and ours[-1] == pytest.approx(0.07)
    assert ours.argmax() == 108 and triangle.argmax() == 109  # the peak 107.25 falls between steps 107 and 108
    assert 0.005 < np.abs(ours - triangle).max() < 0.006  # "at most 0.6% of the peak"
