"""The events of the training loop."""

from __future__ import annotations

from enum import Enum

__all__ = ["Event"]


class Event(str, Enum):
    """Where callbacks run. The loop, with every event where it fires::

        FIT_START                      # state.model, optimizer, criterion are ready
        for epoch in range(epochs):
            EPOCH_START
            for each optimizer step:
                for each of the grad_accum_steps batches:
                    BATCH_START        # state.inputs, state.targets are on the device:
                                       #   augment, mix (set state.mix), perturb them here
                    state.outputs = model(state.inputs)
                    AFTER_FORWARD
                    state.loss = criterion(outputs, targets)
                                       #   lam * crit(out, y_a) + (1 - lam) * crit(out, y_b)
                                       #   when state.mix is set
                    AFTER_LOSS         # transform the data loss (flooding)
                    BEFORE_BACKWARD    # add regularisers to state.loss (penalties)
                    backward(state.loss / grad_accum_steps)
                    AFTER_BACKWARD     # gradients ready: inspect them, add adversarial ones;
                                       #   set state.skip_step to skip the update
                optimizer.step()       # gradient transforms run here as step pre-hooks
                optimizer.zero_grad()
                STEP_END               # after the update: schedules, averaging, logging
                every eval_every_steps updates (optional): EVAL_START, evaluate, EVAL_END
                if state.stop_training: break
            EVAL_START                 # before validation (swap in averaged weights)
            state.metrics |= evaluate(val_data)
            EVAL_END                   # after validation (swap them back)
            EPOCH_END                  # state.metrics complete: early stopping, checkpoints
            if state.stop_training: break
        FIT_END

    A callback overrides ``on_<event>`` (``on_batch_start``, ``on_step_end``, ...); callbacks
    run in list order and stop training by setting ``state.stop_training``, never by raising.
    """

    FIT_START = "fit_start"
    EPOCH_START = "epoch_start"
    BATCH_START = "batch_start"
    AFTER_FORWARD = "after_forward"
    AFTER_LOSS = "after_loss"
    BEFORE_BACKWARD = "before_backward"
    AFTER_BACKWARD = "after_backward"
    STEP_END = "step_end"
    EVAL_START = "eval_start"
    EVAL_END = "eval_end"
    EPOCH_END = "epoch_end"
    FIT_END = "fit_end"

    @property
    def method(self) -> str:
        return f"on_{self.value}"
