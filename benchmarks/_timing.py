"""Small timing helpers shared by the benchmarks (medians of interleaved repeats)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_per_call(fn: Callable[[], object], device: torch.device, calls: int) -> float:
    """Seconds per call of ``fn`` over ``calls`` back-to-back calls (device events on CUDA)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / calls
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def interleaved_medians(fns: dict[str, Callable[[], object]], device, calls: int, repeats: int) -> dict[str, float]:
    """Median seconds per call for each function, the functions timed in turn in every repeat."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(time_per_call(fn, device, calls))
    return {name: statistics.median(v) for name, v in samples.items()}


def copy_bandwidth(device: torch.device, nbytes: int = 2 << 30) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus bytes written."""
    n = nbytes // 4
    a = torch.randn(n, device=device)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    sync(device)
    seconds = statistics.median(time_per_call(lambda: b.copy_(a), device, 10) for _ in range(5))
    return 2 * a.numel() * 4 / seconds
