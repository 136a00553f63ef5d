"""Loop tricks as callbacks: thin adapters over the tier-1 functions."""

from trickbag.train.callbacks.averaging import EMA, SWA, SnapshotEnsemble
from trickbag.train.callbacks.base import TOUCHES, Callback, check_compatible
from trickbag.train.callbacks.batch import AdversarialTraining, Augment, CutMix, Mixup
from trickbag.train.callbacks.checkpoint import Checkpoint
from trickbag.train.callbacks.constraints import MaxNorm
from trickbag.train.callbacks.control import EarlyStopping, NaNGuard
from trickbag.train.callbacks.embedding import EmbeddingAdversarial
from trickbag.train.callbacks.gradients import GradientCentralization, GradientClipping, GradientNoise
from trickbag.train.callbacks.logging import MetricsLogger, ProgressBar
from trickbag.train.callbacks.robust import CatastrophicOverfittingGuard, RobustAccuracy
from trickbag.train.callbacks.losses import Flooding, LabelSmoothing, WeightPenalty
from trickbag.train.callbacks.schedule import LRSchedule

__all__ = [
    "TOUCHES",
    "AdversarialTraining",
    "Augment",
    "Callback",
    "CatastrophicOverfittingGuard",
    "Checkpoint",
    "CutMix",
    "EMA",
    "EarlyStopping",
    "EmbeddingAdversarial",
    "Flooding",
    "GradientCentralization",
    "GradientClipping",
    "GradientNoise",
    "LRSchedule",
    "LabelSmoothing",
    "MaxNorm",
    "MetricsLogger",
    "Mixup",
    "NaNGuard",
    "ProgressBar",
    "RobustAccuracy",
    "SWA",
    "SnapshotEnsemble",
    "WeightPenalty",
    "check_compatible",
]
