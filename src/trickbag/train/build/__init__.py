"""Build a ready-to-run Trainer from a RunConfig: data, model, loss, optimizer, schedule, tricks.

One module per concern:

- :mod:`~trickbag.train.build.data`: data sets by name and ``load_splits``;
- :mod:`~trickbag.train.build.model`: the model, loss, metrics, schedule and optimizer;
- :mod:`~trickbag.train.build.tricks`: ``apply_tricks``, the catalog's tricks as config edits and callbacks;
- :mod:`~trickbag.train.build.trackers`: the MLflow and W&B loggers of ``train.loggers``;
- :mod:`~trickbag.train.build.run`: ``build_run``, which puts them together, and the ``Run`` it returns.

Every public name ``from trickbag.train.build import ...`` gave when this was one module still
comes from here (``Trainer`` and the config classes included), as does ``_normalizer``.
"""

from trickbag.train.build.data import DATASETS, _normalizer, load_splits
from trickbag.train.build.model import (LOSSES, PEER_MODELS, build_loss, build_metrics, build_model, build_schedule,
                                        check_optimizer, optimizer_factory, peer_model)
from trickbag.train.build.run import Run, build_run, check_names
from trickbag.train.build.trackers import build_trackers
from trickbag.train.build.tricks import TrickPlan, apply_tricks
from trickbag.train.config import RunConfig, TrickSpec
from trickbag.train.trainer import Trainer, seed_everything

__all__ = ["Run", "build_run", "build_metrics", "DATASETS", "LOSSES"]
