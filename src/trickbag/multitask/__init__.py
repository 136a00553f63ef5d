"""Multi-task learning: hard sharing (a trunk and named heads), soft sharing (task models kept
close by a penalty), task-weighted losses, and the comparison behind `trickbag multitask`."""

from trickbag.losses import MultiTaskLoss, parameter_distance, soft_sharing_penalty, uncertainty_weighted_loss
from trickbag.multitask.data import FASHION_MNIST_COARSE, TaskBatches, label_map
from trickbag.multitask.model import MultiTask, SoftSharing, split_head
from trickbag.multitask.runner import ARMS, parse_task, run

__all__ = [
    "ARMS",
    "FASHION_MNIST_COARSE",
    "MultiTask",
    "MultiTaskLoss",
    "SoftSharing",
    "TaskBatches",
    "label_map",
    "parameter_distance",
    "parse_task",
    "run",
    "soft_sharing_penalty",
    "split_head",
    "uncertainty_weighted_loss",
]
