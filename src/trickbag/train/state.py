"""The typed state every callback reads and writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover
    from trickbag.augment import Mixed
    from trickbag.train.trainer import Trainer

__all__ = ["TrainState"]


@dataclass
class TrainState:
    """What the loop knows at any event.

    Counters: ``step`` (optimizer steps done), ``epoch`` (0-based, current), ``batch_index``
    (batches taken in this epoch), ``steps_per_epoch``, ``total_steps``, ``epochs``.

    The batch: ``inputs``, ``targets`` (on the device), ``outputs``, ``loss`` (a tensor: read
    it with ``float()`` only when you must, it synchronises), ``mix`` (set by mixup/cutmix).

    Results: ``metrics`` (latest values by name), ``history`` (one dict per epoch).

    Evaluation: ``eval_forward(model, x) -> outputs``, when set, replaces ``model(x)`` in
    ``Trainer.evaluate`` and ``predict`` (test-time augmentation sets it).

    Flags: ``stop_training`` (with ``stop_reason``), ``skip_step`` (skip this update),
    ``diverged`` (a non-finite loss or gradient was found; checkpoints stop).
    """

    model: nn.Module
    raw_model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: Callable[[Tensor, Tensor], Tensor]
    eval_criterion: Callable[[Tensor, Tensor], Tensor]
    device: torch.device
    trainer: Trainer
    train_data: Any = None
    val_data: Any = None
    precision: str = "fp32"
    scaler: Any = None
    run_dir: Path | None = None
    rank: int = 0
    world_size: int = 1
    seed: int = 0
    grad_accum_steps: int = 1
    # counters
    step: int = 0
    epoch: int = 0
    batch_index: int = 0
    micro_batch: int = 0
    steps_per_epoch: int = 0
    total_steps: int = 0
    epochs: int = 0
    # the current batch
    inputs: Tensor | None = None
    targets: Tensor | None = None
    outputs: Tensor | None = None
    loss: Tensor | None = None
    mix: Mixed | None = None
    # results and flags
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_training: bool = False
    stop_reason: str = ""
    skip_step: bool = False
    diverged: bool = False
    samples_seen: int = 0
    eval_forward: Callable[[nn.Module, Tensor], Tensor] | None = None

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def will_step(self) -> bool:
        """True on the last micro-batch before an optimizer step."""
        return self.micro_batch == self.grad_accum_steps - 1

    @property
    def is_main(self) -> bool:
        """True on the process that logs and checkpoints (rank 0)."""
        return self.rank == 0

    def stop(self, reason: str) -> None:
        self.stop_training = True
        self.stop_reason = self.stop_reason or reason
