"""The learning-rate range test (Smith 2017)."""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trickbag._progress import Ticker, format_seconds
from trickbag._validate import check_positive, check_positive_int, check_range

__all__ = ["LRFindResult", "lr_find", "plot_lr_find"]


@dataclass
class LRFindResult:
    """What the range test saw and what it suggests.

    ``steepest``: the learning rate where the smoothed loss falls fastest (per unit of log lr);
    ``min_over_10``: a tenth of the learning rate at the lowest smoothed loss;
    ``cyclic_bounds``: ``(base_lr, max_lr)`` for cyclical schedules, ``max_lr`` a third of the
    lowest-loss learning rate (just short of the edge) and ``base_lr`` a quarter of that
    (Smith's "a third or a quarter").
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    steepest: float
    min_over_10: float
    cyclic_bounds: tuple[float, float]
    stopped_early: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"lrs": self.lrs, "losses": self.losses, "smoothed": self.smoothed, "steepest": self.steepest,
                "min_over_10": self.min_over_10, "cyclic_bounds": list(self.cyclic_bounds),
                "stopped_early": self.stopped_early}


def lr_find(
    trainer,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 200,
    beta: float | None = None,
    diverge: float = 4.0,
    progress: bool = False,
) -> LRFindResult:
    """Sweep the learning rate exponentially from ``min_lr`` to ``max_lr`` over ``steps``
    updates of the trainer's model, recording the loss (smoothed by an exponential moving
    average with bias correction, as fastai's ``lr_find``), and stop when the smoothed loss
    exceeds ``diverge`` times its minimum. ``beta`` defaults to a window ``1 / (1 - beta)`` of a
    fifth of a decade of learning rates, so the smoothed curve lags the raw one by about 0.2
    decade (fastai's fixed 0.98 averages 50 steps: two decades of the default sweep). The model, its buffers and the optimizer are restored to their starting
    state afterwards. With ``progress``, a plain line on stderr every 30 s
    (``$TRICKBAG_PROGRESS_INTERVAL``): step, learning rate, loss, rate and ETA.

    Reference: Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017.
    """
    check_positive("min_lr", min_lr)
    check_positive("max_lr", max_lr)
    if max_lr <= min_lr:
        raise ValueError(f"max_lr must be above min_lr, got {min_lr!r} and {max_lr!r}")
    check_positive_int("steps", steps, minimum=5)
    if beta is None:
        per_decade = (steps - 1) / math.log10(max_lr / min_lr)
        beta = 1.0 - 1.0 / max(1.0, per_decade / 5)
    check_range("beta", beta, 0.0, 1.0, high_open=True)
    check_positive("diverge", diverge)
    s = trainer._prepare()
    model, opt = s.raw_model, s.optimizer
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    rng = torch.get_rng_state()
    lrs, losses, smoothed = [], [], []
    avg, best, stopped = 0.0, math.inf, False
    data = trainer.train_data
    it = iter(data)
    was_training = model.training
    model.train()
    ticker = Ticker() if progress else None
    try:
        for i in range(steps):
            lr = min_lr * (max_lr / min_lr) ** (i / (steps - 1))
            for group in opt.param_groups:
                group["lr"] = lr
            batch = next(it, None)
            if batch is None:
                it = iter(data)
                batch = next(it)
            x, y = trainer.unpack(batch)
            x, y = x.to(s.device), y.to(s.device)
            s.inputs, s.targets, s.mix = x, y, None
            with trainer.autocast():
                loss = trainer.compute_loss(s.model(x), s)
            opt.zero_grad(set_to_none=True)
            trainer.backward(loss)
            if s.scaler is not None:
                s.scaler.step(opt)
                s.scaler.update()
            else:
                opt.step()
            value = float(loss.detach())
            lrs.append(lr)
            losses.append(value)
            if not math.isfinite(value):
                stopped = True
                break
            avg = beta * avg + (1 - beta) * value
            sm = avg / (1 - beta ** (i + 1))
            smoothed.append(sm)
            best = min(best, sm)
            if i > 5 and sm > diverge * best:
                stopped = True
                break
            if ticker is not None and ticker.due():
                per_step = ticker.elapsed() / (i + 1)
                print(f"lr-find step {i + 1}/{steps}  lr {lr:.3g}  loss {value:.4f} (smoothed {sm:.4f})  "
                      f"{1 / per_step:.2f} steps/s  ETA {format_seconds((steps - i - 1) * per_step)} at most",
                      file=sys.stderr, flush=True)
    finally:
        model.load_state_dict(saved_model)
        opt.load_state_dict(saved_opt)
        opt.zero_grad(set_to_none=True)
        model.train(was_training)
        torch.set_rng_state(rng)
        if hasattr(data, "set_epoch"):
            data.set_epoch(s.epoch)
            if hasattr(data, "position"):
                data.position = 0
    n = len(smoothed)
    if n < 5:
        raise ValueError(f"the loss diverged after {n} steps; lower min_lr (now {min_lr:g})")
    i_min = min(range(n), key=lambda k: smoothed[k])
    logs = [math.log(lr) for lr in lrs[:n]]
    # Slopes over a window of about a twentieth of the sweep, skipping the first steps, where the
    # smoothed loss is still an average of a few noisy batches and nothing has changed yet.
    w = max(2, n // 20)
    skip = min(max(w, n // 10), max(i_min - w, 0))
    candidates = range(max(skip, w), max(i_min, w + 1))
    slopes = {k: (smoothed[min(k + w, n - 1)] - smoothed[k - w]) / (logs[min(k + w, n - 1)] - logs[k - w]) for k in candidates}
    k_steep = min(slopes, key=slopes.get) if slopes else i_min
    lr_min = lrs[i_min]
    max_cyc = lr_min / 3
    return LRFindResult(lrs[:len(losses)], losses, smoothed, steepest=lrs[k_steep], min_over_10=lr_min / 10,
                        cyclic_bounds=(max_cyc / 4, max_cyc), stopped_early=stopped,
                        extra={"lr_at_min_loss": lr_min})


def plot_lr_find(result: LRFindResult, path: str | Path) -> Path:
    """Draw loss against learning rate (log axis) with the suggestions marked."""
    from trickbag.report.plots import plain_log_ticks, pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    n = len(result.smoothed)
    ax.plot(result.lrs[:n], result.losses[:n], color="#c7c7c7", linewidth=0.8, label="loss")
    ax.plot(result.lrs[:n], result.smoothed, color="#1f77b4", linewidth=1.6, label="smoothed loss")
    for lr, color, label in ((result.steepest, "#2ca02c", f"steepest {result.steepest:.2g}"),
                             (result.min_over_10, "#ff7f0e", f"min / 10 {result.min_over_10:.2g}")):
        ax.axvline(lr, color=color, linestyle="--", linewidth=1, label=label)
    lo, hi = result.cyclic_bounds
    ax.axvspan(lo, hi, color="#9467bd", alpha=0.12, label=f"cyclic bounds {lo:.2g} to {hi:.2g}")
    ax.set_xscale("log")
    plain_log_ticks(ax, "x")
    raw = [v for v in result.losses[:n] if math.isfinite(v)]
    top = max(result.smoothed[: max(1, n // 2)] + raw[: max(1, n // 2)] + [min(result.smoothed) * 2])
    low = min(raw + result.smoothed)  # the raw loss dips below the smoothed one: keep it in view
    pad = 0.05 * (top - low)
    ax.set_ylim(low - pad, top + pad)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test" + (" (stopped when the loss diverged)" if result.stopped_early else ""), fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    from trickbag._atomic import save_figure

    save_figure(fig, path)
    plt.close(fig)
    return path
