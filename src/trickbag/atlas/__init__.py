"""The trick atlas: which tricks help where, measured across tasks and pooled by a meta-analysis."""

from trickbag.atlas.meta import MetaResult, cell_effect, random_effects
from trickbag.atlas.report import write_report

__all__ = ["MetaResult", "cell_effect", "random_effects", "write_report"]
