"""The trainer, its events and state, checkpoints, and runs built from configs."""

from trickbag.train.checkpoint import load_checkpoint, save_atomic
from trickbag.train.events import Event
from trickbag.train.state import TrainState
from trickbag.train.trainer import Trainer, seed_everything

__all__ = ["Event", "TrainState", "Trainer", "load_checkpoint", "save_atomic", "seed_everything"]
