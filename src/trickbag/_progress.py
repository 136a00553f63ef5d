"""Plain progress lines at a steady cadence, for output that is not a terminal (logs, CI)."""

from __future__ import annotations

import os
import sys
import time

__all__ = ["ENV", "Ticker", "format_seconds", "interval_s", "is_terminal"]

ENV = "TRICKBAG_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 30.0


def interval_s() -> float:
    """Seconds between plain progress lines: ``$TRICKBAG_PROGRESS_INTERVAL``, else 30."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{ENV} must be a number of seconds > 0, got {raw!r}")
    return value


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s`` or ``1h02m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Ticker:
    """Says when a plain line is due: every ``interval`` seconds (default :func:`interval_s`),
    counted from construction. ``due()`` costs one clock read."""

    def __init__(self, interval: float | None = None):
        self.interval = interval_s() if interval is None else interval
        self.start = time.perf_counter()
        self._next = self.start + self.interval

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def due(self) -> bool:
        now = time.perf_counter()
        if now < self._next:
            return False
        while self._next <= now:
            self._next += self.interval
        return True


def is_terminal(stream=None) -> bool:
    """Whether ``stream`` (default stderr) is a terminal."""
    stream = stream or sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()
