"""Reports: one style (Markdown + HTML with PNGs) for ablations, runs and searches."""

from trickbag.report.page import Page, fmt

__all__ = ["Page", "fmt"]
