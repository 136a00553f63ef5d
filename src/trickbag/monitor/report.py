"""The report of a single run: curves, per-layer distributions over time, filters, diagnoses."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from trickbag._atomic import save_figure
from trickbag.monitor.diagnoses import THRESHOLDS
from trickbag.report import Page
from trickbag.report.plots import COLORS, plain_log_ticks, pyplot

__all__ = ["render_run"]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if i == len(lines) - 1:  # a line cut short by a kill mid-append: skip it
                    continue
                raise ValueError(f"{path}: line {i + 1} is not valid JSON") from None
    return out


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _marker(n: int) -> dict[str, Any]:
    """Lines of one or two points are invisible without markers."""
    return {"marker": "o", "markersize": 4} if n <= 3 else {}


def _loss_plot(steps, epochs, out: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), dpi=110)
    for ax, scale in zip(axes, ("linear", "log")):
        if steps:
            ax.plot([s["step"] for s in steps], [_num(s["loss"]) for s in steps], color="#aec7e8", linewidth=0.8,
                    label="training loss (sampled steps)", **_marker(len(steps)))
        if epochs:
            ax.plot([e["step"] for e in epochs], [_num(e.get("train_loss")) for e in epochs], "o-", color="#1f77b4",
                    label="training loss (epoch mean)")
            if any("val_loss" in e for e in epochs):
                ax.plot([e["step"] for e in epochs], [_num(e.get("val_loss")) for e in epochs], "s-", color="#d62728",
                        label="validation loss")
        ax.set_yscale(scale)
        if scale == "log":
            plain_log_ticks(ax)
        ax.set_xlabel("step")
        ax.set_ylabel(f"loss ({scale} scale)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)


def _lr_metrics_plot(steps, epochs, out: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), dpi=110)
    if steps:
        axes[0].plot([s["step"] for s in steps], [s["lr"] for s in steps], color="#9467bd", **_marker(len(steps)))
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("learning rate")
    axes[0].grid(alpha=0.3)
    keys = sorted({k for e in epochs for k, v in e.items() if isinstance(v, (int, float)) and ("acc" in k or "top5" in k)})
    for i, k in enumerate(keys):
        axes[1].plot([e["epoch"] for e in epochs], [_num(e.get(k)) for e in epochs], "o-", color=COLORS[i % len(COLORS)], label=k)
    from matplotlib.ticker import MaxNLocator

    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("metric")
    axes[1].grid(alpha=0.3)
    if keys:
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)


def _distributions(samples, names, key: str, range_key: str, out: Path, title: str) -> bool:
    """One panel per layer: its histogram over time as an image (time left to right). Each
    sample's histogram covers the range its values had then; the panel puts them all on one
    value axis, ``[-R, R]`` with ``R`` the largest range the layer reached, so the axis is in the
    layer's own units; ``[0, R]`` for a layer that never had a negative value (a ReLU's output)."""
    import numpy as np

    hists = [s.get(key) or [] for s in samples]
    if not hists or not names or not hists[-1]:
        return False
    bins = len(hists[-1][0])
    plt = pyplot()
    n = min(len(names), 12)
    pick = np.linspace(0, len(names) - 1, n).round().astype(int) if len(names) > n else range(len(names))
    cols = 3
    rows = math.ceil(len(pick) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.6 * rows), dpi=100, squeeze=False, layout="constrained")
    steps = [s["step"] for s in samples]
    unit = (np.arange(bins) + 0.5) * 2 / bins - 1  # bin centres on [-1, 1]
    for ax, idx in zip(axes.flat, pick):
        ranges = [(s.get(range_key) or [1.0] * (idx + 1))[idx] if idx < len(s.get(range_key) or []) else 1.0
                  for s in samples]
        top = max([r for r in ranges if r and math.isfinite(r)] or [1.0])
        edges = np.linspace(-top, top, bins + 1)
        mat = np.zeros((bins, len(hists)))
        for t, (h, r) in enumerate(zip(hists, ranges)):
            if idx < len(h):
                mat[:, t], _ = np.histogram(unit * (r or 1.0), bins=edges, weights=np.asarray(h[idx], dtype=float))
        mat = mat / np.maximum(mat.sum(axis=0, keepdims=True), 1)
        last = steps[-1] if len(steps) > 1 else steps[0] + 1
        image = ax.imshow(np.log10(mat + 1e-4), aspect="auto", origin="lower", cmap="viridis",
                          extent=[steps[0], last, -top, top], vmin=-4, vmax=0)
        if not mat[(edges[:-1] + edges[1:]) / 2 < 0].any():  # no negative value ever (after a ReLU): the empty half is not drawn
            ax.set_ylim(0, top)
        ax.set_title(str(names[idx]), fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.set_ylabel("value", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(pick):]:
        ax.axis("off")
    fig.colorbar(image, ax=list(axes.flat), shrink=0.6, label="log10 share of values", pad=0.01)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, out)
    plt.close(fig)
    return True


def _series_plot(samples, names, getter, out: Path, ylabel: str, log: bool, band=None) -> bool:
    if not samples or not names:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 3.8), dpi=110)
    steps = [s["step"] for s in samples]
    drawn = False
    for i, name in enumerate(names[:20]):
        vals = [getter(s, i) for s in samples]
        if all(v is None or not math.isfinite(v) for v in vals):
            continue
        ax.plot(steps, [v if v is not None else math.nan for v in vals], color=COLORS[i % len(COLORS)],
                linewidth=1.0, label=str(name), **_marker(len(steps)))
        drawn = True
    if band:
        ax.axhspan(*band, color="#2ca02c", alpha=0.08)
    if log:
        ax.set_yscale("log")
        plain_log_ticks(ax)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    if drawn:
        ax.legend(fontsize=6, ncol=4)
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)
    return drawn


def _filters(run_dir: Path, out: Path) -> bool:
    from trickbag.train.checkpoint import load_checkpoint

    path = run_dir / "model.pt"
    if not path.exists():
        return False
    state = load_checkpoint(path)  # weights_only: a damaged or malicious file is one ValueError
    first = next((v for k, v in state.items() if k.endswith("weight") and v.dim() == 4), None)
    if first is None:
        return False
    w = first.float()
    n = min(w.shape[0], 64)
    c = w.shape[1]
    plt = pyplot()
    cols = 8
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9), dpi=110, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        f = w[i]
        img = f.permute(1, 2, 0) if c == 3 else f.mean(0)
        img = (img - img.min()) / (img.max() - img.min() + 1e-12)
        ax.imshow(img.numpy(), cmap=None if c == 3 else "gray", interpolation="nearest")
    fig.suptitle(f"first convolution: {n} of {w.shape[0]} filters ({c} input channel{'s' if c > 1 else ''})", fontsize=8)
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)
    return True


def render_run(run_dir: str | Path) -> dict[str, Any]:
    """Write ``report.md``, ``report.html`` and PNGs for a run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    metrics = _jsonl(run_dir / "metrics.jsonl")
    steps = [m for m in metrics if m.get("kind") == "step"]
    epochs = [m for m in metrics if m.get("kind") == "epoch"]
    mon = _jsonl(run_dir / "monitor.jsonl")
    layer_info = next((m for m in mon if m.get("kind") == "layers"), {})
    samples = [m for m in mon if m.get("kind") == "sample"]
    if samples and not steps:
        steps = [{"step": s["step"], "loss": s["loss"], "lr": s["lr"]} for s in samples]
    diagnoses = json.loads((run_dir / "diagnoses.json").read_text()) if (run_dir / "diagnoses.json").exists() else []
    results = json.loads((run_dir / "results.json").read_text()) if (run_dir / "results.json").exists() else {}
    model = cfg.get("model", {}).get("name", "model")
    page = Page(f"Run: {model} on {cfg.get('data', {}).get('name', 'data')} ({run_dir.name})")
    final = results.get("final", epochs[-1] if epochs else {})
    summary = [f"{k} {final[k]:.4f}" for k in ("train_loss", "val_loss", "val_acc") if isinstance(final.get(k), (int, float))]
    summary += [f"{k} {v:.4f}" for k, v in results.get("test", {}).items() if k in ("test_loss", "test_acc")]
    page.paragraph((", ".join(summary) or "no results yet") + (f"; stopped: {results['stopped']}" if results.get("stopped") else ""))
    page.heading("Diagnoses")
    if diagnoses:
        page.table(["diagnosis", "what was seen", "try"], [[d["title"], d["message"], d["fix"]] for d in diagnoses])
    elif samples:
        page.paragraph("None: the monitor saw nothing wrong.")
    else:
        page.paragraph("The run had no Monitor (add `tricks: [monitor]` to the config) so only the curves are shown.")
    page.heading("Loss, learning rate and metrics")
    _loss_plot(steps, epochs, run_dir / "loss.png")
    page.image("loss.png", "Training and validation loss, linear and log scale")
    _lr_metrics_plot(steps, epochs, run_dir / "lr_metrics.png")
    page.image("lr_metrics.png", "Learning rate per step; validation metrics per epoch")
    if samples:
        acts = [n if ":" in n or k in n.lower() else f"{n} ({k})" for n, k in layer_info.get("activations", [])]
        weights = layer_info.get("weights", [])
        page.heading("Per-layer statistics")
        if _distributions(samples, acts, "act_hist", "act_range", run_dir / "activations.png",
                          "activation distributions over time (share of values, log scale)"):
            page.image("activations.png", "Activation distributions per layer over time")
        if _distributions(samples, weights, "grad_hist", "grad_range", run_dir / "gradients.png",
                          "gradient distributions over time (share of values, log scale)"):
            page.image("gradients.png", "Gradient distributions per weight over time")
        low, high = THRESHOLDS["update_low"], THRESHOLDS["update_high"]
        if _series_plot(samples, weights, lambda s, i: (s.get("update_ratio") or [None] * (i + 1))[i] if i < len(s.get("update_ratio") or []) else None,
                        run_dir / "update_ratio.png", "update / weight ratio", log=True, band=(low, high)):
            page.image("update_ratio.png", f"Update-to-weight ratio per layer (green band: {low:g} to {high:g}, where no "
                                           "diagnosis is raised; the classic rule of thumb aims near 1e-3)")
        relu = [(i, n) for i, (n, k) in enumerate(layer_info.get("activations", [])) if k == "relu"]
        if relu and _series_plot(samples, [n for _, n in relu],
                                 lambda s, j: s["act"][relu[j][0]][3] if s.get("act") and relu[j][0] < len(s["act"]) else None,
                                 run_dir / "dead_units.png", "dead unit fraction", log=False):
            page.image("dead_units.png", "Fraction of dead units after each ReLU-like activation")
        if _series_plot(samples, weights, lambda s, i: s["grad"][i][0] if s.get("grad") and i < len(s["grad"]) else None,
                        run_dir / "grad_norms.png", "gradient norm", log=True):
            page.image("grad_norms.png", "Gradient norm per weight layer")
    if _filters(run_dir, run_dir / "filters.png"):
        page.heading("First-layer filters")
        page.image("filters.png", "The first convolution's filters at the end of the run")
    lrf = run_dir / "lr_find.json"
    if lrf.exists() and (run_dir / "lr_find.png").exists():
        r = json.loads(lrf.read_text())
        page.heading("Learning-rate range test")
        page.paragraph(f"steepest descent at {r['steepest']:.3g}; minimum / 10: {r['min_over_10']:.3g}; "
                       f"cyclical bounds {r['cyclic_bounds'][0]:.3g} to {r['cyclic_bounds'][1]:.3g}.")
        page.image("lr_find.png", "Loss against learning rate")
    page.heading("Config")
    page.code(yaml.safe_dump(cfg, sort_keys=False), "yaml")
    paths = page.write(run_dir)
    return {"report": [str(p) for p in paths], "diagnoses": diagnoses}
