"""Logging: a JSONL metrics log (TensorBoard too when installed) and a progress bar."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from trickbag._optional import available
from trickbag._progress import Ticker, format_seconds, is_terminal
from trickbag._validate import check_positive, check_positive_int
from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["MetricsLogger", "ProgressBar"]


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = str(v)
        out[k] = v
    return out


class MetricsLogger(Callback):
    """Append metrics to ``run_dir/metrics.jsonl``: a line every ``every_steps`` updates
    (``{"kind": "step", "step", "epoch", "loss", "lr"}``, one device sync each) and a line per
    epoch with everything in ``state.metrics``. Also writes the same scalars to TensorBoard
    (``run_dir/tensorboard``) when the package is installed, unless ``tensorboard=False``.
    Only the main process writes."""

    def __init__(self, path: str | Path | None = None, every_steps: int = 50, tensorboard: bool | None = None):
        check_positive_int("every_steps", every_steps)
        self.path = Path(path) if path is not None else None
        self.every_steps = every_steps
        self.tensorboard = tensorboard
        self._writer = None

    def on_fit_start(self, state: TrainState) -> None:
        if not state.is_main:
            return
        if self.path is None:
            if state.run_dir is None:
                raise ValueError("MetricsLogger needs a path or a trainer run_dir")
            self.path = state.run_dir / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        use_tb = self.tensorboard if self.tensorboard is not None else available("torch.utils.tensorboard")
        if use_tb:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.path.parent / "tensorboard"))

    def _write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(_jsonable(record)) + "\n")

    def on_step_end(self, state: TrainState) -> None:
        if not state.is_main or state.step % self.every_steps:
            return
        loss = float(state.loss.detach())
        self._write({"kind": "step", "step": state.step, "epoch": state.epoch + 1, "loss": loss, "lr": state.lr,
                     "time": time.time()})
        if self._writer is not None:
            self._writer.add_scalar("train/loss", loss, state.step)
            self._writer.add_scalar("train/lr", state.lr, state.step)

    def on_epoch_end(self, state: TrainState) -> None:
        if not state.is_main:
            return
        self._write({"kind": "epoch", **state.metrics})
        if self._writer is not None:
            for k, v in state.metrics.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    self._writer.add_scalar(f"epoch/{k}", v, state.step)
            self._writer.flush()

    def on_fit_end(self, state: TrainState) -> None:
        if state.is_main and self.path is not None:
            final = {k: v for k, v in state.metrics.items() if k.startswith(("swa_", "ensemble_", "snapshot_", "best_", "diagnosis"))}
            if final:
                self._write({"kind": "final", **final})
        if self._writer is not None:
            self._writer.close()


class ProgressBar(Callback):
    """A tqdm bar per epoch on a terminal (epoch, step, loss, lr, samples/s, ETA), refreshing
    the loss every ``refresh_every`` updates (one device sync each). When the output is not a
    terminal (a log file, CI), plain lines instead: one every ``interval_s`` seconds (default
    ``$TRICKBAG_PROGRESS_INTERVAL``, else 30) with the step, loss, rate and ETA, as tqdm and
    Lightning do in logs, and one per epoch with its metrics."""

    def __init__(self, refresh_every: int = 20, stream=None, interval_s: float | None = None):
        check_positive_int("refresh_every", refresh_every)
        if interval_s is not None:
            check_positive("interval_s", interval_s)
        self.refresh_every = refresh_every
        self.stream = stream
        self.interval_s = interval_s
        self._bar = None
        self._ticker: Ticker | None = None

    def _tty(self) -> bool:
        return is_terminal(self.stream)

    def on_fit_start(self, state: TrainState) -> None:
        if state.is_main and not self._tty():
            self._ticker, self._fit_step0 = Ticker(self.interval_s), state.step

    def _plain_line(self, state: TrainState) -> None:
        elapsed, done = self._ticker.elapsed(), state.step - self._fit_step0
        rate = done * state.inputs.shape[0] * state.grad_accum_steps / max(elapsed, 1e-9)
        eta = (state.total_steps - state.step) * elapsed / max(done, 1)
        in_epoch = state.batch_index // state.grad_accum_steps
        print(f"epoch {state.epoch + 1}/{state.epochs}  step {state.step}/{state.total_steps} "
              f"({in_epoch}/{state.steps_per_epoch} of the epoch)  loss {float(state.loss.detach()):.4f}  "
              f"lr {state.lr:.3g}  {rate:.0f} samples/s  ETA {format_seconds(eta)} (training)",
              file=self.stream or sys.stderr, flush=True)

    def on_epoch_start(self, state: TrainState) -> None:
        self._t0 = time.perf_counter()
        self._step0 = state.step
        if not state.is_main or not self._tty():
            return
        from tqdm.auto import tqdm

        self._bar = tqdm(total=state.steps_per_epoch, initial=state.batch_index // state.grad_accum_steps,
                         desc=f"epoch {state.epoch + 1}/{state.epochs}", unit="step", leave=False,
                         file=self.stream or sys.stderr, dynamic_ncols=True)

    def on_step_end(self, state: TrainState) -> None:
        if self._ticker is not None and self._ticker.due():
            self._plain_line(state)
        if self._bar is None:
            return
        self._bar.update(1)
        if state.step % self.refresh_every == 0:
            done = state.step - self._step0
            rate = done * state.inputs.shape[0] * state.grad_accum_steps / max(time.perf_counter() - self._t0, 1e-9)
            self._bar.set_postfix(step=state.step, loss=f"{float(state.loss.detach()):.4f}", lr=f"{state.lr:.3g}",
                                  samples_s=f"{rate:.0f}", refresh=False)

    def on_epoch_end(self, state: TrainState) -> None:
        if not state.is_main:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        m = state.metrics
        parts = [f"epoch {state.epoch + 1}/{state.epochs}", f"step {state.step}/{state.total_steps}",
                 f"loss {m.get('train_loss', float('nan')):.4f}"]
        for key in ("val_loss", "val_acc"):
            if key in m:
                parts.append(f"{key} {m[key]:.4f}")
        parts.append(f"lr {state.lr:.3g}")
        parts.append(f"{m.get('samples_per_sec', 0):.0f} samples/s")
        remaining = (state.epochs - state.epoch - 1) * m.get("epoch_time", 0.0)
        parts.append(f"ETA {remaining:.0f}s")
        print("  ".join(parts), file=self.stream or sys.stderr, flush=True)

    def on_fit_end(self, state: TrainState) -> None:
        if state.is_main and state.stop_reason:  # say that the run stopped early, and why
            print(f"stopped: {state.stop_reason}", file=self.stream or sys.stderr, flush=True)
