"""The Monitor callback: per-layer activation, gradient and update statistics, sampled cheaply."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import torch
from torch import Tensor, nn

from trickbag._validate import check_positive_int
from trickbag.train.callbacks.base import Callback
from trickbag.train.state import TrainState

__all__ = ["Monitor", "RELU_LIKE", "SATURATING", "layer_label"]

log = logging.getLogger("trickbag")

RELU_LIKE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish)
SATURATING = (nn.Tanh, nn.Sigmoid)
WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# Activation statistics, in this order, one row per watched layer:
ACT_FIELDS = ("mean", "std", "zero_frac", "dead_frac", "saturated")
GRAD_FIELDS = ("norm", "mean", "std", "rms", "weight_norm")


class Monitor(Callback):
    """Watch a run the way an experienced practitioner does, at almost no cost.

    Every ``every_steps`` updates (by default often enough for about 20 samples in the run, and
at least every 50 updates) it records, per layer:

    - activations (outputs of weighted layers and of activation functions): mean, standard
      deviation, a histogram over the range the values take at that sample, the fraction of zeros and of dead units (channels zero
      for every example of the batch) after ReLU-like activations, the fraction saturated
      (``|y| > 0.99`` for tanh, ``y`` outside ``[0.01, 0.99]`` for sigmoid);
    - gradients of weights: norm, mean, standard deviation, RMS and a histogram;
    - the update-to-weight ratio ``||w_after - w_before|| / ||w_before||`` (healthy: about 1e-3);
    - the loss and the learning rate.

    Statistics are reduced on the device into small tensors; they reach the host every
    ``flush_every`` samples and at the end of each epoch (no host synchronisation per step),
    go to ``run_dir/monitor.jsonl`` when the run has a directory, and stay in memory thinned to
    at most ``max_samples``. Forward hooks exist only during a sampled forward pass and are all
    removed at the end of the run. Diagnoses (:mod:`trickbag.monitor.diagnoses`) run at every
    epoch end, are logged as warnings once each, and are listed in ``state.metrics``,
    ``run_dir/diagnoses.json`` and the report.
    """

    def __init__(self, every_steps: int | None = None, *, bins: int = 48, flush_every: int = 20, max_samples: int = 2000,
                 max_layers: int = 64, diagnose: bool = True, tensorboard: bool | None = None):
        if every_steps is not None:
            check_positive_int("every_steps", every_steps)
        check_positive_int("bins", bins, minimum=4)
        check_positive_int("flush_every", flush_every)
        self.every_steps, self.bins, self.flush_every = every_steps, bins, flush_every
        self.max_samples, self.max_layers, self.diagnose = max_samples, max_layers, diagnose
        self.tensorboard = tensorboard
        self.requested_every = every_steps
        self.samples: list[dict[str, Any]] = []  # on the host
        self._pending: list[dict[str, Any]] = []  # device tensors awaiting a flush
        self._hooks: list[Any] = []
        self.diagnoses: list[dict[str, Any]] = []
        self._warned: set[tuple[str, str]] = set()
        self._writer = None

    # ---- setup ------------------------------------------------------------------------------
    def on_fit_start(self, state: TrainState) -> None:
        if self.requested_every is None:  # about 20 samples in any run, at least every 50 updates
            self.every_steps = max(1, min(50, state.total_steps // 20))
        model = state.raw_model
        acts, weights = [], []
        for name, m in model.named_modules():
            if not name or list(m.children()):
                continue
            label = layer_label(name, m)
            if isinstance(m, WEIGHTED):
                acts.append((label, m, "linear"))
                weights.append((label, m.weight))
            elif isinstance(m, RELU_LIKE):
                acts.append((label, m, "relu"))
            elif isinstance(m, nn.Tanh):
                acts.append((label, m, "tanh"))
            elif isinstance(m, nn.Sigmoid):
                acts.append((label, m, "sigmoid"))
        self.act_layers = acts[: self.max_layers]
        self.weight_layers = weights[: self.max_layers]
        self.layer_info = {"activations": [[n, k] for n, _, k in self.act_layers],
                           "weights": [n for n, _ in self.weight_layers]}
        self._path = state.run_dir / "monitor.jsonl" if state.run_dir is not None and state.is_main else None
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"kind": "layers", **self.layer_info, "every_steps": self.every_steps,
                                    "bins": self.bins}) + "\n")
        if self._path is not None and self.tensorboard is not False:
            from trickbag._optional import available

            if self.tensorboard or available("torch.utils.tensorboard"):
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(state.run_dir / "tensorboard"))

    def _sampling(self, state: TrainState) -> bool:
        return (state.step + 1) % self.every_steps == 0 or state.step == 0

    # ---- activations ------------------------------------------------------------------------
    def on_batch_start(self, state: TrainState) -> None:
        if state.micro_batch != 0 or not self._sampling(state):
            return
        self._acts: list[Tensor | None] = [None] * len(self.act_layers)
        self._act_hists: list[Tensor | None] = [None] * len(self.act_layers)
        self._act_ranges: list[Tensor | None] = [None] * len(self.act_layers)
        for i, (name, module, kind) in enumerate(self.act_layers):
            self._hooks.append(module.register_forward_hook(self._make_hook(i, name, kind)))

    def _make_hook(self, i: int, name: str, kind: str):
        def hook(module, args, out):
            if not isinstance(out, Tensor) or not out.is_floating_point():
                return
            self._acts[i] = _activation_stats(out.detach(), kind)
            self._act_hists[i], self._act_ranges[i] = _histogram(out.detach(), self.bins)
        return hook

    def on_after_forward(self, state: TrainState) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    # ---- gradients and updates ------------------------------------------------------------------
    def on_after_backward(self, state: TrainState) -> None:
        if not state.will_step or not self._sampling(state) or not hasattr(self, "_acts"):
            return
        weights = [w for _, w in self.weight_layers]
        grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in weights]
        if state.scaler is not None:  # scaled gradients: report them unscaled
            inv = 1.0 / state.scaler.get_scale()
            grads = [g * inv for g in grads]
        if grads:
            norms = torch.stack(torch._foreach_norm(grads)).float()
            wnorms = torch.stack(torch._foreach_norm([w.detach() for w in weights])).float()
            std_means = torch.stack([torch.stack(torch.std_mean(g.detach())) if g.numel() > 1
                                     else torch.stack([g.new_zeros(()), g.detach().reshape(())]) for g in grads]).float()
            if getattr(self, "_sqrt_numel", None) is None or self._sqrt_numel.device != norms.device:
                # built once: a host-to-device copy from pageable memory would wait for the GPU queue
                self._sqrt_numel = torch.tensor([g.numel() for g in grads], dtype=torch.float32).sqrt().to(norms.device)
            self._grad = torch.stack([norms, std_means[:, 1], std_means[:, 0], norms / self._sqrt_numel, wnorms], dim=1)
            hists, ranges = zip(*(_histogram(g.detach(), self.bins) for g in grads))
            self._grad_hists, self._grad_ranges = torch.stack(hists), torch.stack(ranges)
        else:
            self._grad = self._grad_hists = self._grad_ranges = None
        self._before = torch._foreach_mul([w.detach() for w in weights], 1.0) if weights else []

    def on_step_end(self, state: TrainState) -> None:
        if not self._sampling_done(state):
            return
        weights = [w.detach() for _, w in self.weight_layers]
        if weights:
            delta = torch._foreach_sub(weights, self._before)
            ratio = torch.stack(torch._foreach_norm(delta)) / torch.stack(torch._foreach_norm(self._before)).clamp_min(1e-12)
        else:
            ratio = None
        acts = [a if a is not None else torch.full((len(ACT_FIELDS),), float("nan"), device=state.device) for a in self._acts]
        hists = [h if h is not None else torch.zeros(self.bins, device=state.device) for h in self._act_hists]
        ranges = [r if r is not None else torch.zeros((), device=state.device) for r in self._act_ranges]
        self._pending.append({
            "step": state.step, "epoch": state.epoch + 1, "lr": state.lr, "loss": state.loss.detach().float(),
            "act": torch.stack(acts) if acts else None, "act_hist": torch.stack(hists) if hists else None,
            "act_range": torch.stack(ranges) if ranges else None,
            "grad": self._grad, "grad_hist": self._grad_hists, "grad_range": self._grad_ranges, "update_ratio": ratio,
        })
        del self._acts, self._before
        if len(self._pending) >= self.flush_every:
            self.flush()

    def _sampling_done(self, state: TrainState) -> bool:
        return hasattr(self, "_acts") and hasattr(self, "_before")

    # ---- host side ------------------------------------------------------------------------------
    def flush(self) -> None:
        """Move pending samples to the host (one transfer per tensor) and write them out."""
        if not self._pending:
            return
        records = []
        for p in self._pending:
            rec: dict[str, Any] = {"kind": "sample", "step": p["step"], "epoch": p["epoch"], "lr": p["lr"],
                                   "loss": float(p["loss"])}
            for key in ("act", "act_hist", "act_range", "grad", "grad_hist", "grad_range", "update_ratio"):
                t = p[key]
                rec[key] = [] if t is None else t.cpu().tolist()
            records.append(rec)
        self._pending.clear()
        if self._path is not None:
            with open(self._path, "a", encoding="utf-8") as f:
                for rec in records:
                    f.write(json.dumps(_rounded(rec)) + "\n")
        if self._writer is not None:
            self._tensorboard(records)
        self.samples.extend(records)
        while len(self.samples) > self.max_samples:  # bounded memory: thin out the older half
            half = len(self.samples) // 2
            self.samples = self.samples[:half:2] + self.samples[half:]

    def _tensorboard(self, records: list[dict[str, Any]]) -> None:
        import numpy as np

        w = self._writer
        for rec in records:
            step = rec["step"]
            w.add_scalar("monitor/loss", rec["loss"], step)
            for (name, _), row, hist, r in zip(self.layer_info["activations"], rec["act"], rec["act_hist"], rec["act_range"]):
                w.add_scalar(f"activation_mean/{name}", row[0], step)
                w.add_scalar(f"activation_std/{name}", row[1], step)
                _hist(w, f"activation/{name}", np.asarray(hist), r, step)
            for name, row, hist, r, ratio in zip(self.layer_info["weights"], rec["grad"], rec["grad_hist"],
                                                 rec["grad_range"], rec["update_ratio"]):
                w.add_scalar(f"gradient_norm/{name}", row[0], step)
                w.add_scalar(f"update_ratio/{name}", ratio, step)
                _hist(w, f"gradient/{name}", np.asarray(hist), r, step)
        w.flush()

    def on_epoch_end(self, state: TrainState) -> None:
        self.flush()
        if self.diagnose:
            self._diagnose(state, final=False)

    def on_fit_end(self, state: TrainState) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self.flush()
        if self.diagnose:
            self._diagnose(state, final=True)
        if self._writer is not None:
            self._writer.close()

    def _diagnose(self, state: TrainState, final: bool) -> None:
        from trickbag.monitor.diagnoses import diagnose

        found = diagnose(self.samples, state.history, self.layer_info, final=final,
                         num_classes=_num_classes(state))
        for d in found:
            key = (d["code"], d.get("where", ""))
            if key not in self._warned:
                self._warned.add(key)
                self.diagnoses.append(d)
                log.warning("%s: %s Fix: %s", d["title"], d["message"], d["fix"])
        state.metrics["diagnoses"] = [d["code"] for d in self.diagnoses]
        if state.history:
            state.history[-1]["diagnoses"] = list(state.metrics["diagnoses"])
        if state.run_dir is not None and state.is_main:
            from trickbag._atomic import write_json

            write_json(state.run_dir / "diagnoses.json", self.diagnoses)

    def state_dict(self) -> dict[str, Any]:
        return {"every_steps": self.every_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.every_steps = int(state.get("every_steps", self.every_steps or 50))


HIST_SAMPLE = 1 << 16  # histograms look at an evenly strided sample of at most this many values


def _histogram(t: Tensor, bins: int) -> tuple[Tensor, Tensor]:
    """A histogram of ``t`` over the range its values take now, ``[-r, r]`` with ``r`` just above
    ``max |t|`` (a device tensor: no host synchronisation), from an evenly strided sample whose
    counts are rescaled to the full size. Whole-tensor histograms of large activations are slow on
    GPUs (every element contends for a few bins' atomics) and tell no more."""
    flat = t.reshape(-1)
    n = flat.numel()
    step = max(1, n // HIST_SAMPLE)
    sample = flat[::step].float()
    r = (sample.abs().amax() * 1.05).clamp_min(1e-12)
    return torch.histc(sample / r, bins=bins, min=-1.0, max=1.0) * (n / sample.numel()), r


def layer_label(name: str, module: nn.Module) -> str:
    """A layer's name for reports: its module path, with the class added where the path is only
    Sequential indices (``"3: Conv2d"``; torchvision's ``"layer1.0.conv1"`` stays as it is)."""
    last = name.rsplit(".", 1)[-1]
    return f"{name}: {type(module).__name__}" if last.isdigit() else name


def _activation_stats(y: Tensor, kind: str) -> Tensor:
    """mean, std, zero fraction, dead-unit fraction, saturated fraction: single-pass reductions,
    no full-size temporaries for ReLU layers (the common case)."""
    zero = torch.zeros((), device=y.device, dtype=torch.float32)
    std, mean = torch.std_mean(y) if y.numel() > 1 else (zero, y.reshape(()).float())
    zero_frac = dead = saturated = zero
    if kind == "relu":
        zero_frac = 1.0 - torch.count_nonzero(y).float() / y.numel()
        if y.dim() >= 2:
            dims = [d for d in range(y.dim()) if d != 1]
            dead = ((y.amax(dim=dims) == 0) & (y.amin(dim=dims) == 0)).float().mean()
    elif kind == "tanh":
        saturated = (y.abs() > 0.99).float().mean()
    elif kind == "sigmoid":
        saturated = ((y < 0.01) | (y > 0.99)).float().mean()
    return torch.stack([mean.float(), std.float(), zero_frac, dead, saturated])


def _num_classes(state: TrainState) -> int | None:
    out = state.outputs
    return int(out.shape[1]) if isinstance(out, Tensor) and out.dim() == 2 else None


def _rounded(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if not math.isfinite(obj) or obj == 0 else float(f"{obj:.4g}")
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    return obj


def _hist(writer, tag: str, counts, r: float, step: int) -> None:
    import numpy as np

    edges = np.linspace(-r, r, len(counts) + 1)
    n = counts.sum()
    if n <= 0:
        return
    centers = (edges[:-1] + edges[1:]) / 2
    writer.add_histogram_raw(tag, min=float(-r), max=float(r), num=float(n), sum=float((centers * counts).sum()),
                             sum_squares=float((centers ** 2 * counts).sum()), bucket_limits=edges[1:].tolist(),
                             bucket_counts=counts.tolist(), global_step=step)


