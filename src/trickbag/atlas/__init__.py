"""The trick atlas: which tricks help where, measured across tasks and pooled across them.

``run(suite, out=...)`` plans every (task, trick) cell of a suite as a paired comparison with
its task's baseline in one Optuna study (the ablation's planner, trial code and statistics),
and writes the report (``trickbag.atlas.report``)."""

from trickbag.atlas.runner import collect_cells, run
from trickbag.atlas.suite import AtlasTrick, Suite, Task, load_suite

__all__ = ["run", "collect_cells", "load_suite", "Suite", "Task", "AtlasTrick"]
