"""Learning-rate schedules as pure functions of the optimizer step.

Every schedule is a small frozen object ``s`` with ``s(step) -> multiplier`` of the base
learning rate, where ``step`` counts optimizer steps from 0 (the value for step 0 is used for
the first update). Combine them with :func:`join`; hand one to torch with
:func:`to_lr_scheduler`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import ClassVar

import torch

from trickbag._validate import (
    check_choice,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_range,
)

__all__ = [
    "Schedule",
    "constant",
    "linear_warmup",
    "step_decay",
    "multistep",
    "exponential",
    "linear_decay",
    "inverse_sqrt",
    "cosine_decay",
    "cyclic_cosine",
    "triangular",
    "sgdr",
    "warmup_cosine_restarts",
    "one_cycle",
    "join",
    "warmup_cosine",
    "to_lr_scheduler",
]


def _check_step(step: int) -> None:
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")


@dataclass(frozen=True, repr=False)
class Schedule:
    """Base class: a pure function from the optimizer step (0-based) to an LR multiplier."""

    maker: ClassVar[str] = "schedule"  # the public function that builds this schedule

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{self.maker}({args})"


def _cosine(fraction: float) -> float:
    """Half cosine from 1 (fraction 0) to 0 (fraction 1)."""
    return 0.5 * (1.0 + math.cos(math.pi * fraction))


@dataclass(frozen=True, repr=False)
class _Constant(Schedule):
    maker: ClassVar[str] = "constant"

    value: float

    def __call__(self, step: int) -> float:
        return self.value


def constant(value: float = 1.0) -> Schedule:
    """The same multiplier at every step.

    Example:
        >>> constant()(1000)
        1.0
    """
    check_nonnegative("value", value)
    return _Constant(float(value))


@dataclass(frozen=True, repr=False)
class _LinearWarmup(Schedule):
    maker: ClassVar[str] = "linear_warmup"

    warmup_steps: int
    start: float

    def __call__(self, step: int) -> float:
        _check_step(step)
        if step >= self.warmup_steps:
            return 1.0
        return self.start + (1.0 - self.start) * step / self.warmup_steps


def linear_warmup(warmup_steps: int, *, start: float = 0.0) -> Schedule:
    r"""Rise linearly from ``start`` at step 0 to 1.0 at ``warmup_steps``, then stay at 1.

    .. math:: m(s) = \mathrm{start} + (1 - \mathrm{start}) \min(s / w, 1)

    Example:
        >>> s = linear_warmup(4)
        >>> [s(i) for i in range(6)]
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]

    Reference: Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
    2017.
    """
    check_positive_int("warmup_steps", warmup_steps)
    check_range("start", start, 0.0, 1.0)
    return _LinearWarmup(warmup_steps, float(start))


@dataclass(frozen=True, repr=False)
class _StepDecay(Schedule):
    maker: ClassVar[str] = "step_decay"

    every_steps: int
    factor: float

    def __call__(self, step: int) -> float:
        _check_step(step)
        return self.factor ** (step // self.every_steps)


def step_decay(every_steps: int, factor: float = 0.5) -> Schedule:
    r"""Multiply by ``factor`` every ``every_steps`` steps: :math:`m(s) = f^{\lfloor s/k \rfloor}`.

    "Halve every 5 epochs" is ``step_decay(5 * steps_per_epoch, 0.5)``; "x0.1 every 20" is
    ``step_decay(20 * steps_per_epoch, 0.1)``.

    Example:
        >>> s = step_decay(10, 0.5)
        >>> s(9), s(10), s(25)
        (1.0, 0.5, 0.25)
    """
    check_positive_int("every_steps", every_steps)
    check_range("factor", factor, 0.0, 1.0, low_open=True)
    return _StepDecay(every_steps, float(factor))


@dataclass(frozen=True, repr=False)
class _Multistep(Schedule):
    maker: ClassVar[str] = "multistep"

    milestones: tuple[int, ...]
    factor: float

    def __call__(self, step: int) -> float:
        _check_step(step)
        return self.factor ** bisect.bisect_right(self.milestones, step)


def multistep(milestones: Sequence[int], factor: float = 0.1) -> Schedule:
    """Multiply by ``factor`` at each milestone step (as ``torch.optim.lr_scheduler.MultiStepLR``).

    Example:
        >>> s = multistep([3, 6], 0.1)
        >>> [round(s(i), 3) for i in (0, 3, 6)]
        [1.0, 0.1, 0.01]
    """
    ms = tuple(int(m) for m in milestones)
    if not ms or any(m <= 0 for m in ms) or list(ms) != sorted(set(ms)):
        raise ValueError(f"milestones must be increasing positive steps, got {list(milestones)!r}")
    check_range("factor", factor, 0.0, 1.0, low_open=True)
    return _Multistep(ms, float(factor))


@dataclass(frozen=True, repr=False)
class _Exponential(Schedule):
    maker: ClassVar[str] = "exponential"

    gamma: float

    def __call__(self, step: int) -> float:
        _check_step(step)
        return self.gamma**step


def exponential(gamma: float) -> Schedule:
    r"""Decay by ``gamma`` every step: :math:`m(s) = \gamma^s`.

    Example:
        >>> exponential(0.5)(3)
        0.125
    """
    check_range("gamma", gamma, 0.0, 1.0, low_open=True)
    return _Exponential(float(gamma))


@dataclass(frozen=True, repr=False)
class _LinearDecay(Schedule):
    maker: ClassVar[str] = "linear_decay"

    total_steps: int
    floor: float

    def __call__(self, step: int) -> float:
        _check_step(step)
        frac = min(step, self.total_steps) / self.total_steps
        return 1.0 - (1.0 - self.floor) * frac


def linear_decay(total_steps: int, floor: float = 0.0) -> Schedule:
    r"""Fall linearly from 1 at step 0 to ``floor`` at ``total_steps`` and stay there.

    Example:
        >>> s = linear_decay(4, floor=0.2)
        >>> [round(s(i), 2) for i in (0, 2, 4, 9)]
        [1.0, 0.6, 0.2, 0.2]
    """
    check_positive_int("total_steps", total_steps)
    check_range("floor", floor, 0.0, 1.0)
    return _LinearDecay(total_steps, float(floor))


@dataclass(frozen=True, repr=False)
class _InverseSqrt(Schedule):
    maker: ClassVar[str] = "inverse_sqrt"

    warmup_steps: int

    def __call__(self, step: int) -> float:
        _check_step(step)
        if step < self.warmup_steps:
            return step / self.warmup_steps
        return math.sqrt(self.warmup_steps / step)


def inverse_sqrt(warmup_steps: int) -> Schedule:
    r"""Linear warmup to 1 at ``warmup_steps``, then decay as :math:`\sqrt{w / s}`.

    The Transformer's schedule (Vaswani et al. 2017), normalised to peak at 1.

    Example:
        >>> s = inverse_sqrt(4)
        >>> s(2), s(4), s(16)
        (0.5, 1.0, 0.5)
    """
    check_positive_int("warmup_steps", warmup_steps)
    return _InverseSqrt(warmup_steps)


@dataclass(frozen=True, repr=False)
class _CosineDecay(Schedule):
    maker: ClassVar[str] = "cosine_decay"

    total_steps: int
    floor: float

    def __call__(self, step: int) -> float:
        _check_step(step)
        frac = min(step, self.total_steps) / self.total_steps
        return self.floor + (1.0 - self.floor) * _cosine(frac)


def cosine_decay(total_steps: int, floor: float = 0.0) -> Schedule:
    r"""Half cosine from 1 at step 0 to ``floor`` at ``total_steps`` (then flat).

    .. math:: m(s) = f + (1 - f)\,\tfrac12\big(1 + \cos(\pi \min(s, T) / T)\big)

    Example:
        >>> s = cosine_decay(10)
        >>> s(0), round(s(5), 6), s(10)
        (1.0, 0.5, 0.0)

    Reference: Loshchilov and Hutter, "SGDR", ICLR 2017.
    """
    check_positive_int("total_steps", total_steps)
    check_range("floor", floor, 0.0, 1.0)
    return _CosineDecay(total_steps, float(floor))


@dataclass(frozen=True, repr=False)
class _CyclicCosine(Schedule):
    maker: ClassVar[str] = "cyclic_cosine"

    cycle_steps: int
    floor: float

    def __call__(self, step: int) -> float:
        _check_step(step)
        t = step % self.cycle_steps
        return self.floor + (1.0 - self.floor) * _cosine(t / (self.cycle_steps - 1))


def cyclic_cosine(cycle_steps: int, *, floor: float = 0.0) -> Schedule:
    r"""Cosine annealing restarted every ``cycle_steps`` steps (snapshot ensembles' schedule).

    .. math:: m(s) = f + (1 - f)\,\tfrac12\big(1 + \cos(\pi\,(s \bmod C) / (C - 1))\big)

    1.0 at the first step of every cycle and exactly ``floor`` at its last.

    The popular form :math:`\frac{\eta_0 - \eta_{min}}{2}(\cos(\pi \frac{(x - 1) \bmod C}{C}) + 1)
    + \eta_{min}` has an off-by-one: with ``x`` counted from 1 its last step of a cycle sits
    above the floor (it only reaches it at the restart, which never runs), and fed a 0-based
    step it starts every cycle at the bottom. We count steps from 0 and divide by ``C - 1``,
    so the lowest learning rate is the last update of each cycle, the point where a snapshot
    ensemble takes its snapshot.

    Example:
        >>> s = cyclic_cosine(5, floor=0.1)
        >>> [round(s(i), 3) for i in range(6)]
        [1.0, 0.868, 0.55, 0.232, 0.1, 1.0]

    Reference: Huang et al., "Snapshot Ensembles: Train 1, get M for free", ICLR 2017.
    """
    check_positive_int("cycle_steps", cycle_steps, minimum=2)
    check_range("floor", floor, 0.0, 1.0)
    return _CyclicCosine(cycle_steps, float(floor))


@dataclass(frozen=True, repr=False)
class _Triangular(Schedule):
    maker: ClassVar[str] = "triangular"

    base: float
    peak: float
    half_cycle_steps: int
    mode: str
    gamma: float

    def __call__(self, step: int) -> float:
        _check_step(step)
        total = 2 * self.half_cycle_steps
        cycle = math.floor(1 + step / total)
        x = 1.0 + step / total - cycle
        scale = x / 0.5 if x <= 0.5 else (x - 1) / (0.5 - 1)
        if self.mode == "triangular":
            amp = 1.0
        elif self.mode == "triangular2":
            amp = 1 / (2.0 ** (cycle - 1))
        else:  # exp_range scales by the step count, as in Smith's paper and torch
            amp = self.gamma**step
        return self.base + (self.peak - self.base) * scale * amp


def triangular(
    base: float,
    peak: float,
    half_cycle_steps: int,
    *,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> Schedule:
    r"""Cyclical learning rates (Smith 2017): a triangle wave between ``base`` and ``peak``.

    ``mode="triangular2"`` halves the amplitude every cycle; ``"exp_range"`` scales it by
    ``gamma ** step``. Equal to ``torch.optim.lr_scheduler.CyclicLR`` with
    ``step_size_up = step_size_down = half_cycle_steps``.

    Example:
        >>> s = triangular(0.1, 1.0, 2)
        >>> [round(s(i), 2) for i in range(5)]
        [0.1, 0.55, 1.0, 0.55, 0.1]

    Reference: Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017.
    """
    check_nonnegative("base", base)
    check_positive("peak", peak)
    if peak < base:
        raise ValueError(f"peak must be >= base, got base={base!r}, peak={peak!r}")
    check_positive_int("half_cycle_steps", half_cycle_steps)
    check_choice("mode", mode, ("triangular", "triangular2", "exp_range"))
    check_range("gamma", gamma, 0.0, 1.0, low_open=True)
    return _Triangular(float(base), float(peak), half_cycle_steps, mode, float(gamma))


def _locate_cycle(step: int, cycle_steps: int, cycle_mult: int, *, offset: int = 0) -> tuple[int, int, int]:
    """(cycle index, step within the cycle, grown part of its length) for cycles of length
    ``offset + (cycle_steps - offset) * cycle_mult ** i``: a fixed part of ``offset`` steps
    (a warm-up) and a part that grows geometrically."""
    base = cycle_steps - offset
    if cycle_mult == 1:
        return step // cycle_steps, step % cycle_steps, base
    index, start, grown = 0, 0, base
    while step >= start + grown + offset:
        start += grown + offset
        grown *= cycle_mult
        index += 1
    return index, step - start, grown


@dataclass(frozen=True, repr=False)
class _SGDR(Schedule):
    maker: ClassVar[str] = "sgdr"

    cycle_steps: int
    cycle_mult: int
    floor: float

    def __call__(self, step: int) -> float:
        _check_step(step)
        _, t, length = _locate_cycle(step, self.cycle_steps, self.cycle_mult)
        return self.floor + (1.0 - self.floor) * _cosine(t / length)


def sgdr(cycle_steps: int, *, cycle_mult: int = 1, floor: float = 0.0) -> Schedule:
    r"""Stochastic gradient descent with warm restarts (Loshchilov and Hutter 2017).

    Cycle ``i`` lasts ``cycle_steps * cycle_mult ** i`` steps and follows
    :math:`f + (1 - f)\frac12(1 + \cos(\pi T_{cur} / T_i))`, as
    ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`` (the floor is approached at the
    restart, not reached).

    Example:
        >>> s = sgdr(4, cycle_mult=2)
        >>> [round(s(i), 3) for i in (0, 2, 4, 8, 12)]
        [1.0, 0.5, 1.0, 0.5, 1.0]

    Reference: Loshchilov and Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts",
    ICLR 2017.
    """
    check_positive_int("cycle_steps", cycle_steps)
    check_positive_int("cycle_mult", cycle_mult)
    check_range("floor", floor, 0.0, 1.0)
    return _SGDR(cycle_steps, cycle_mult, float(floor))


@dataclass(frozen=True, repr=False)
class _WarmupCosineRestarts(Schedule):
    maker: ClassVar[str] = "warmup_cosine_restarts"

    cycle_steps: int
    cycle_mult: int
    warmup_steps: int
    gamma: float
    floor: float

    def __call__(self, step: int) -> float:
        _check_step(step)
        # Only the cosine part grows: T_{i+1} = (T_i - warmup) * mult + warmup.
        w = self.warmup_steps
        index, t, cosine_length = _locate_cycle(step, self.cycle_steps, self.cycle_mult, offset=w)
        length = cosine_length + w
        peak = self.gamma**index
        if t < self.warmup_steps:
            return self.floor + (peak - self.floor) * t / self.warmup_steps
        frac = (t - self.warmup_steps) / (length - self.warmup_steps)
        return self.floor + (peak - self.floor) * _cosine(frac)


def warmup_cosine_restarts(
    cycle_steps: int,
    *,
    cycle_mult: int = 1,
    warmup_steps: int = 0,
    gamma: float = 1.0,
    floor: float = 0.0,
) -> Schedule:
    r"""Cosine annealing with warm restarts, a linear warmup in each cycle and decaying peaks.

    The widely copied ``CosineAnnealingWarmUpRestarts(T_0, T_mult, eta_max, T_up, gamma)``, cycle
    for cycle: it grows only the cosine part of a cycle, ``T_{i+1} = (T_i - T_up) * T_mult +
    T_up``, so cycle ``i`` lasts ``warmup_steps + (cycle_steps - warmup_steps) * cycle_mult ** i``
    steps (with 10, 2 and 2: restarts at 10, 28, 62) and peaks at ``gamma ** i``; it rises
    linearly from ``floor`` to the peak over ``warmup_steps``, then falls along a half cosine
    towards ``floor``.

    Example:
        >>> s = warmup_cosine_restarts(4, warmup_steps=1, gamma=0.5)
        >>> [round(s(i), 3) for i in range(8)]
        [0.0, 1.0, 0.75, 0.25, 0.0, 0.5, 0.375, 0.125]
    """
    check_positive_int("cycle_steps", cycle_steps)
    check_positive_int("cycle_mult", cycle_mult)
    if not isinstance(warmup_steps, int) or not 0 <= warmup_steps < cycle_steps:
        raise ValueError(
            f"warmup_steps must be an integer in [0, cycle_steps={cycle_steps}), got "
            f"{warmup_steps!r}"
        )
    check_range("gamma", gamma, 0.0, 1.0, low_open=True)
    check_range("floor", floor, 0.0, 1.0)
    return _WarmupCosineRestarts(cycle_steps, cycle_mult, warmup_steps, float(gamma), float(floor))


@dataclass(frozen=True, repr=False)
class _OneCycle(Schedule):
    maker: ClassVar[str] = "one_cycle"

    total_steps: int
    pct_start: float
    div_factor: float
    final_div_factor: float
    anneal: str
    three_phase: bool

    def _phases(self) -> list[tuple[float, float, float]]:
        initial = 1.0 / self.div_factor
        final = initial / self.final_div_factor
        up_end = self.pct_start * self.total_steps - 1
        if self.three_phase:
            return [
                (up_end, initial, 1.0),
                (2 * self.pct_start * self.total_steps - 2, 1.0, initial),
                (self.total_steps - 1, initial, final),
            ]
        return [(up_end, initial, 1.0), (self.total_steps - 1, 1.0, final)]

    def __call__(self, step: int) -> float:
        _check_step(step)
        step = min(step, self.total_steps - 1)
        phases = self._phases()
        start = 0.0
        for i, (end, lo, hi) in enumerate(phases):
            if step <= end or i == len(phases) - 1:
                pct = (step - start) / (end - start)
                if self.anneal == "cos":
                    return hi + (lo - hi) / 2.0 * (math.cos(math.pi * pct) + 1)
                return (hi - lo) * pct + lo
            start = end
        raise AssertionError("unreachable")  # pragma: no cover


def one_cycle(
    total_steps: int,
    *,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal: str = "cos",
    three_phase: bool = False,
) -> Schedule:
    r"""The 1cycle policy (Smith and Topin 2019), relative to the peak learning rate.

    Rises from ``1 / div_factor`` to 1 over the first ``pct_start`` of training, then anneals
    to ``1 / (div_factor * final_div_factor)``; equal to ``torch.optim.lr_scheduler.OneCycleLR``
    (with the optimizer's lr as ``max_lr``). Steps past the end hold the final value.

    Example:
        >>> s = one_cycle(100)
        >>> round(s(0), 3), round(s(29), 3), s(99)
        (0.04, 1.0, 4e-06)

    Reference: Smith and Topin, "Super-Convergence", 2019.
    """
    check_positive_int("total_steps", total_steps, minimum=2)
    check_range("pct_start", pct_start, 0.0, 1.0, low_open=True, high_open=True)
    check_positive("div_factor", div_factor)
    check_positive("final_div_factor", final_div_factor)
    check_choice("anneal", anneal, ("cos", "linear"))
    up_end = pct_start * total_steps - 1  # the warm-up's last step, as torch's OneCycleLR counts
    if up_end <= 0 or up_end >= total_steps - 1 or (three_phase and 2 * pct_start * total_steps - 2 >= total_steps - 1):
        raise ValueError(
            f"pct_start={pct_start} leaves no room for the phases of {total_steps} steps "
            f"(the warm-up needs more than one step: pct_start * total_steps > 1)"
        )
    return _OneCycle(
        total_steps, float(pct_start), float(div_factor), float(final_div_factor), anneal, three_phase
    )


@dataclass(frozen=True, repr=False)
class _Join(Schedule):
    maker: ClassVar[str] = "join"

    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]

    def __call__(self, step: int) -> float:
        _check_step(step)
        i = bisect.bisect_right(self.boundaries, step)
        offset = self.boundaries[i - 1] if i else 0
        return self.schedules[i](step - offset)


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Chain schedules: ``schedules[i + 1]`` takes over at ``boundaries[i]``, restarted at step 0.

    A warmup followed by a cosine decay is
    ``join([linear_warmup(w), cosine_decay(T - w)], [w])``, no new class needed.

    Example:
        >>> s = join([linear_warmup(2), cosine_decay(4)], [2])
        >>> [round(s(i), 3) for i in range(7)]
        [0.0, 0.5, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    schedules = tuple(schedules)
    bounds = tuple(int(b) for b in boundaries)
    if len(schedules) != len(bounds) + 1:
        raise ValueError(
            f"join needs one boundary fewer than schedules, got {len(schedules)} schedules and "
            f"{len(bounds)} boundaries"
        )
    if any(b <= 0 for b in bounds) or list(bounds) != sorted(set(bounds)):
        raise ValueError(f"boundaries must be increasing positive steps, got {list(boundaries)!r}")
    for s in schedules:
        if not callable(s):
            raise ValueError(f"join takes schedules (callables step -> multiplier), got {s!r}")
    return _Join(schedules, bounds)


def warmup_cosine(total_steps: int, *, warmup_steps: int, floor: float = 0.0) -> Schedule:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``floor`` at ``total_steps``.

    Just ``join([linear_warmup(w), cosine_decay(total_steps - w, floor)], [w])``.

    Example:
        >>> s = warmup_cosine(10, warmup_steps=2)
        >>> round(s(1), 3), s(2), s(10)
        (0.5, 1.0, 0.0)
    """
    check_positive_int("total_steps", total_steps, minimum=2)
    if not isinstance(warmup_steps, int) or not 0 < warmup_steps < total_steps:
        raise ValueError(
            f"warmup_steps must be an integer in (0, total_steps={total_steps}), got "
            f"{warmup_steps!r}"
        )
    return join([linear_warmup(warmup_steps), cosine_decay(total_steps - warmup_steps, floor)], [warmup_steps])


def to_lr_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule, *, last_epoch: int = -1
) -> torch.optim.lr_scheduler.LambdaLR:
    """Wrap a schedule in a ``torch.optim.lr_scheduler.LambdaLR`` (step it once per update).

    The schedule is wrapped in a plain function, so the scheduler's ``state_dict()`` holds only
    numbers: it round-trips through ``torch.save`` and ``torch.load(weights_only=True)``.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> sched = to_lr_scheduler(opt, linear_warmup(2))
        >>> lrs = []
        >>> for _ in range(3):
        ...     lrs.append(opt.param_groups[0]["lr"]); opt.step(); sched.step()
        >>> lrs
        [0.0, 0.05, 0.1]
    """
    if not callable(schedule):
        raise ValueError(f"schedule must be callable step -> multiplier, got {schedule!r}")

    def lr_lambda(step: int) -> float:
        return schedule(step)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda, last_epoch=last_epoch)
