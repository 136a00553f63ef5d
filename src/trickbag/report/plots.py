"""Matplotlib helpers shared by the reports (the ``plots`` extra)."""

from __future__ import annotations

from trickbag._optional import require

__all__ = ["pyplot", "COLORS", "plain_log_ticks"]

# matplotlib's tab10, then the light half of tab20: 20 colours no two of which look alike.
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
          "#dbdb8d", "#9edae5"]


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    matplotlib = require("matplotlib", "plots", "reports")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plain_log_ticks(ax, axis: str = "y") -> None:
    """Plain numbers on a log axis (0.3, 2, 1e-05 where needed) instead of 3x10^-1, with the
    minor ticks labelled too when the axis spans under two decades (a subset of them, all under
    half a decade, as matplotlib's ``LogFormatter`` picks them), so a short axis is never left
    with one label or none."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):
        def __call__(self, x, pos=None):
            return f"{x:g}" if super().__call__(x, pos) else ""

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(Plain(labelOnlyBase=True))
    target.set_minor_formatter(Plain(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
