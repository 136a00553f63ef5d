"""The ablation runner: which tricks help on your data, by how much, with statistics."""

from trickbag.ablation.arms import Arm, make_arms, parse_tricks
from trickbag.ablation.runner import AblationSpec, run, spec_from_config
from trickbag.ablation.stats import bonferroni, holm, paired, verdict

# ``verdict`` with ``bonferroni`` p-values is the report's rule (its verdicts are read off the
# simultaneous Bonferroni intervals it draws); ``holm`` is a different, step-down rule without
# matching intervals: name it beside any verdict it gave.
__all__ = ["AblationSpec", "Arm", "bonferroni", "holm", "make_arms", "paired", "parse_tricks", "run",
           "spec_from_config", "verdict"]
