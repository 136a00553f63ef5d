"""Automatic diagnoses of a run, each with a suggested fix.

Inputs are the Monitor's samples (loss, learning rate, per-layer activation, gradient and
update statistics) and the per-epoch history. Thresholds are the rules of thumb of the
practitioners' guides; each diagnosis names what it measured so it can be checked.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

__all__ = ["diagnose", "THRESHOLDS"]

THRESHOLDS = {
    "diverge_factor": 2.0,  # recent loss above this times the lowest, and above the start
    "flat_fraction": 0.95,  # final loss still above this share of the initial loss
    "dead_fraction": 0.5,  # dead ReLU units in a layer
    "vanish_ratio": 1e-3,  # gradient RMS of the first weight layer / the last
    "explode_ratio": 1e3,
    "update_low": 1e-5,  # update-to-weight ratio, healthy around 1e-3; the report's green band
    "update_high": 1e-1,
    "improve_min": 0.002,  # last-epoch improvement of the validation metric that counts
}


def _d(code: str, title: str, message: str, fix: str, where: str = "") -> dict[str, Any]:
    return {"code": code, "title": title, "message": message, "fix": fix, "where": where}


def _finite(values):
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def diagnose(samples: list[dict[str, Any]], history: list[dict[str, Any]], layers: dict[str, Any], *,
             final: bool = True, num_classes: int | None = None) -> list[dict[str, Any]]:
    """Everything that looks wrong with the run, as ``{code, title, message, fix, where}`` dicts."""
    t = THRESHOLDS
    out: list[dict[str, Any]] = []
    losses = [s["loss"] for s in samples]
    epoch_losses = [h.get("train_loss") for h in history]

    # the loss: NaN, diverging, or not moving
    if any(isinstance(v, float) and not math.isfinite(v) for v in losses + [x for x in epoch_losses if x is not None]):
        out.append(_d("nan_loss", "The loss became NaN or infinite",
                      "a non-finite training loss was recorded.",
                      "lower the learning rate, clip gradients (gradient_clipping), check the inputs for NaNs, "
                      "keep nan_guard on"))
    finite = _finite(losses)
    if len(finite) >= 6:
        start, low = statistics.fmean(finite[:2]), min(finite)
        recent = statistics.median(finite[-max(2, len(finite) // 5):])
        if recent > t["diverge_factor"] * low and recent > start:
            out.append(_d("diverging", "The loss is diverging",
                          f"the recent loss ({recent:.4g}) is above its start ({start:.4g}) and "
                          f"{recent / low:.1f}x its lowest value ({low:.4g}).",
                          "lower the learning rate (trickbag lr-find), add warmup, clip gradients"))
        elif final and recent > t["flat_fraction"] * start:
            out.append(_d("loss_flat", "The loss did not move",
                          f"after {len(finite)} samples the loss ({recent:.4g}) is still {100 * recent / start:.0f}% "
                          f"of where it started ({start:.4g}).",
                          "raise the learning rate (trickbag lr-find), look for dead units or saturated "
                          "activations below, and check that the labels match the inputs (shuffled labels look like this)"))

    # dead ReLU units and saturation, from the recent samples
    recent_samples = samples[-3:]
    for i, (name, kind) in enumerate(layers.get("activations", [])):
        vals = [s["act"][i] for s in recent_samples if s.get("act") and i < len(s["act"])]
        if not vals:
            continue
        if kind == "relu":
            dead = statistics.median(v[3] for v in vals)
            if dead > t["dead_fraction"]:
                out.append(_d("dead_relu", "Dead ReLU units",
                              f"{100 * dead:.0f}% of the units after {name} output zero for every example.",
                              "use leaky_relu, a lower learning rate, or another initialisation (kaiming_init); "
                              "check for a large negative bias", where=name))
        elif kind in ("tanh", "sigmoid"):
            sat = statistics.median(v[4] for v in vals)
            if sat > 0.5:
                out.append(_d("saturated", "Saturated activations",
                              f"{100 * sat:.0f}% of the outputs of {name} ({kind}) are saturated.",
                              "normalise the inputs, use xavier_init or batch_norm, or a ReLU-family activation",
                              where=name))

    # gradients across depth
    weights = layers.get("weights", [])
    if len(weights) >= 3:
        ratios = []
        for s in samples[-5:]:
            g = s.get("grad") or []
            if len(g) >= 2 and g[-1][3] > 0:
                ratios.append(g[0][3] / g[-1][3])
        ratios = _finite(ratios)
        if ratios:
            r = statistics.median(ratios)
            if r < t["vanish_ratio"]:
                out.append(_d("vanishing_gradients", "Vanishing gradients",
                              f"the gradient RMS of the first weight layer ({weights[0]}) is {r:.1e} times the "
                              f"last one's ({weights[-1]}).",
                              "use ReLU-family activations, batch_norm, residual blocks, kaiming_init"))
            elif r > t["explode_ratio"]:
                out.append(_d("exploding_gradients", "Exploding gradients",
                              f"the gradient RMS of the first weight layer ({weights[0]}) is {r:.1e} times the "
                              f"last one's ({weights[-1]}).",
                              "clip gradients, lower the learning rate, add normalisation"))

    # update-to-weight ratios; tiny updates only matter while the loss is still high (a
    # converged model's gradients, and so its updates, are small by design)
    still_high = len(finite) >= 4 and statistics.median(finite[-3:]) > 0.5 * statistics.fmean(finite[:2])
    for i, name in enumerate(weights):
        vals = _finite([s["update_ratio"][i] for s in samples[-5:] if s.get("update_ratio") and i < len(s["update_ratio"])])
        if len(vals) < 2:
            continue
        r = statistics.median(vals)
        if r < t["update_low"] and final and still_high:
            out.append(_d("update_too_small", "Updates far smaller than the weights",
                          f"the update-to-weight ratio of {name} is {r:.1e} (healthy: around 1e-3).",
                          "raise the learning rate, or check for vanishing gradients and dead units", where=name))
        elif r > t["update_high"]:
            out.append(_d("update_too_large", "Updates too large for the weights",
                          f"the update-to-weight ratio of {name} is {r:.1e} (healthy: around 1e-3).",
                          "lower the learning rate or add warmup", where=name))

    # generalisation, from the epoch history
    vl = [h.get("val_loss") for h in history]
    tl = epoch_losses
    if len(history) >= 3 and all(isinstance(v, (int, float)) for v in vl[-3:] + tl[-3:]):
        gaps = [v - x for v, x in zip(vl[-3:], tl[-3:])]
        if vl[-1] > vl[-2] > vl[-3] and tl[-1] < tl[-3] and gaps[-1] > gaps[0]:
            out.append(_d("overfitting", "A growing gap between training and validation",
                          f"validation loss rose for two epochs ({vl[-3]:.4g} -> {vl[-1]:.4g}) while the training "
                          f"loss fell ({tl[-3]:.4g} -> {tl[-1]:.4g}).",
                          "regularise (weight decay, dropout, augmentation, mixup, label_smoothing) or stop early "
                          "(early_stopping)"))
    if num_classes and history and isinstance(history[-1].get("val_acc"), (int, float)) and final:
        chance = 1.0 / num_classes
        acc = history[-1]["val_acc"]
        if acc < chance + 0.5 * (1 - chance) * 0.1:
            out.append(_d("chance_accuracy", "Validation accuracy at chance",
                          f"the final validation accuracy ({acc:.3f}) is near chance ({chance:.3f}) for {num_classes} classes.",
                          "check that labels match inputs, that the validation data is preprocessed like the "
                          "training data, and that the model learns at all (see the loss)"))
    if final and len(history) >= 2:
        key, sign = ("val_acc", 1.0) if isinstance(history[-1].get("val_acc"), (int, float)) else ("val_loss", -1.0)
        vals = [sign * h[key] for h in history if isinstance(h.get(key), (int, float))]
        if len(vals) >= 2 and vals[-1] >= max(vals[:-1]) + t["improve_min"] * (1 if key == "val_acc" else abs(vals[-2]) or 1):
            out.append(_d("still_improving", "Still improving at the last epoch",
                          f"{key} improved at the last epoch ({sign * vals[-2]:.4g} -> {sign * vals[-1]:.4g}).",
                          "train longer"))
    return out
