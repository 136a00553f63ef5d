"""The trick atlas: which tricks help where, measured across tasks and pooled by a meta-analysis.

``run(suite, out=...)`` plans every (task, trick) cell of a suite as a paired comparison with
its task's baseline in one Optuna study (the ablation's planner, trial code and statistics);
``write_report`` pools each trick over the tasks (``trickbag.atlas.meta``) and writes the report."""

from trickbag.atlas.meta import MetaResult, cell_effect, random_effects
from trickbag.atlas.report import write_report
from trickbag.atlas.runner import collect_cells, run
from trickbag.atlas.suite import AtlasTrick, Suite, Task, load_suite

__all__ = ["run", "collect_cells", "load_suite", "Suite", "Task", "AtlasTrick", "MetaResult", "cell_effect",
           "random_effects", "write_report"]
