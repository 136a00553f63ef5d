"""The ablation runner: which tricks help on your data, by how much, with statistics."""

from trickbag.ablation.arms import Arm, make_arms, parse_tricks
from trickbag.ablation.runner import AblationSpec, run, spec_from_config
from trickbag.ablation.stats import holm, paired, verdict

__all__ = ["AblationSpec", "Arm", "holm", "make_arms", "paired", "parse_tricks", "run", "spec_from_config", "verdict"]
