"""Babysitting a run: per-layer statistics, diagnoses, the LR range test and reports."""

from trickbag.monitor.diagnoses import THRESHOLDS, diagnose
from trickbag.monitor.lr_find import LRFindResult, lr_find, plot_lr_find
from trickbag.monitor.monitor import Monitor, layer_label

__all__ = ["LRFindResult", "Monitor", "THRESHOLDS", "diagnose", "layer_label", "lr_find", "plot_lr_find"]
