"""Loop tricks as callbacks: thin adapters over the tier-1 functions."""

from trickbag.train.callbacks.averaging import EMA, SWA, SnapshotEnsemble
from trickbag.train.callbacks.base import TOUCHES, Callback, check_compatible
from trickbag.train.callbacks.batch import AdversarialTraining, Augment, CutMix, Mixup, MixupCutMix
from trickbag.train.callbacks.checkpoint import Checkpoint
from trickbag.train.callbacks.constraints import MaxNorm
from trickbag.train.callbacks.control import EarlyStopping, NaNGuard
from trickbag.train.callbacks.embedding import EmbeddingAdversarial
from trickbag.train.callbacks.evaluation import TestTimeAugmentation
from trickbag.train.callbacks.imbalance import ClassBalanced, LogitAdjustment, TemperatureScaling
from trickbag.train.callbacks.initialization import PatchWhitening
from trickbag.train.callbacks.gradients import GradientCentralization, GradientClipping, GradientNoise
from trickbag.train.callbacks.logging import MetricsLogger, ProgressBar
from trickbag.train.callbacks.multitask import SoftSharingPenalty
from trickbag.train.callbacks.robust import CatastrophicOverfittingGuard, RobustAccuracy
from trickbag.train.callbacks.losses import Flooding, LabelSmoothing, WeightPenalty
from trickbag.train.callbacks.schedule import LRSchedule
from trickbag.train.callbacks.tracking import MLflowLogger, WandbLogger

__all__ = [
    "TOUCHES",
    "AdversarialTraining",
    "Augment",
    "Callback",
    "CatastrophicOverfittingGuard",
    "Checkpoint",
    "ClassBalanced",
    "CutMix",
    "EMA",
    "EarlyStopping",
    "EmbeddingAdversarial",
    "Flooding",
    "GradientCentralization",
    "GradientClipping",
    "GradientNoise",
    "LRSchedule",
    "LogitAdjustment",
    "LabelSmoothing",
    "MLflowLogger",
    "MaxNorm",
    "MetricsLogger",
    "Mixup",
    "MixupCutMix",
    "NaNGuard",
    "PatchWhitening",
    "ProgressBar",
    "RobustAccuracy",
    "SWA",
    "SoftSharingPenalty",
    "SnapshotEnsemble",
    "TemperatureScaling",
    "TestTimeAugmentation",
    "WandbLogger",
    "WeightPenalty",
    "check_compatible",
]
