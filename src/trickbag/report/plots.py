"""Matplotlib helpers shared by the reports (the ``plots`` extra)."""

from __future__ import annotations

from trickbag._optional import require

__all__ = ["pyplot", "COLORS"]

COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#8250df", "#bf8700", "#0a7f89", "#cf222e", "#6e7781",
          "#953800", "#116329", "#0550ae", "#a475f9", "#e16f24", "#57606a"]


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    matplotlib = require("matplotlib", "plots", "reports")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
