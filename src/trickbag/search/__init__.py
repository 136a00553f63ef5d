"""Hyper-parameter search the way the textbooks advise, on Optuna."""

from trickbag.search.runner import border_warnings, narrow, run
from trickbag.search.space import Param, apply_params, load_space, parse_space

__all__ = ["Param", "apply_params", "border_warnings", "load_space", "narrow", "parse_space", "run"]
