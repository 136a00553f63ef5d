"""`trickbag ensemble`: evaluate run directories as an ensemble, with a reliability diagram."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from trickbag._atomic import check_writable, save_figure, save_torch, tidy_folder, write_json
from trickbag._validate import check_choice
from trickbag.calibration import calibration_bins
from trickbag.ensemble.members import load_member, run_splits
from trickbag.ensemble.predict import evaluate, fit_temperatures, predict

__all__ = ["run", "reliability_diagram", "table_text"]


def reliability_diagram(curves: dict[str, tuple[Tensor, Tensor]], path: str | Path, *, bins: int = 15) -> Path:
    """One panel per entry of ``curves`` (name -> (probs, targets)): accuracy per confidence bin
    against the diagonal of perfect calibration, the gap shaded, and the ECE in the title."""
    from trickbag.calibration import expected_calibration_error
    from trickbag.report.plots import pyplot

    plt = pyplot()
    n = len(curves)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), dpi=110, squeeze=False)
    for ax, (name, (p, y)) in zip(axes[0], curves.items()):
        b = calibration_bins(p, y, bins)
        centers = ((b.edges[:-1] + b.edges[1:]) / 2).tolist()
        width = 1.0 / bins
        filled = (b.counts > 0).tolist()
        acc = [a if f else 0.0 for a, f in zip(b.accuracy.tolist(), filled)]
        conf = [c if f else 0.0 for c, f in zip(b.confidence.tolist(), filled)]
        ax.bar(centers, acc, width=width, color="#1f77b4", edgecolor="white", label="accuracy")
        # the gap as opaque red hatching without fill: over a blue bar (under-confidence) and above
        # one (over-confidence) it shows the same red as the legend, never a blend
        ax.bar(centers, [c - a if f else 0.0 for a, c, f in zip(acc, conf, filled)], bottom=acc, width=width,
               fill=False, hatch="////", edgecolor="#d62728", linewidth=0.8, label="gap to confidence")
        ax.plot([0, 1], [0, 1], color="black", linewidth=0.8, linestyle="--")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_title(f"{name[:38]}\nECE {float(expected_calibration_error(p, y, bins)):.4f}", fontsize=8)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = save_figure(fig, path)  # atomically: a kill or a full disk never leaves half a plot
    plt.close(fig)
    return path


def table_text(rows: Sequence[dict[str, Any]], split: str | None = None) -> str:
    """The rows of :func:`~trickbag.ensemble.evaluate` as an aligned text table; ``split``
    (``"test"``, ``"val"``) names the split scored in the header."""
    first = "model" if split is None else f"model (scored on the {split} split)"
    width = max(len(first), *(len(r["name"]) for r in rows))
    lines = [f"{first:<{width}}  {'acc':>7}  {'nll':>7}  {'ece':>7}"]
    for r in rows:
        line = f"{r['name']:<{width}}  {r['acc']:7.4f}  {r['nll']:7.4f}  {r['ece']:7.4f}"
        if "acc_ci" in r:
            line += "   acc [{:.4f}, {:.4f}]  ece [{:.4f}, {:.4f}]".format(*r["acc_ci"], *r["ece_ci"])
        lines.append(line)
    return "\n".join(lines)


def run(members: Sequence[str | Path], *, data: str = "test", combine: str = "probs", calibrate: bool = False,
        bins: int = 15, out: str | Path = "runs/ensemble", intervals: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Evaluate run directories (or weights files in them) as an ensemble on their config's
    ``data`` split: accuracy, NLL and ECE per member and for the ensemble; with ``calibrate``,
    temperatures fitted on the validation split too. Writes ``ensemble.json`` and
    ``reliability.png`` to ``out``."""
    from trickbag.train._runtime import _resolve_device
    from trickbag.train.config import _device

    check_choice("data", data, ("test", "val"))
    if calibrate and data == "val":
        raise ValueError("--calibrate fits temperatures on the validation split; evaluate on --data test")
    valid = _device(device)
    if valid is not None:
        raise ValueError(f"device must be {valid}, got {device!r}")
    device = _resolve_device(device)  # 'auto' chosen; 'cuda' without a GPU is refused here
    loaded = [load_member(m, device=device) for m in members]
    data_keys = {m.config.to_yaml().split("model:")[0] for m in loaded}
    if len(data_keys) > 1:
        raise ValueError("the members were trained on different data configs; an ensemble needs one data set")
    splits = run_splits(loaded[0].config)
    split = getattr(splits, data)
    if split is None:
        raise ValueError(f"the members' data has no {data} split")
    out = Path(out)
    tidy_folder(out)  # the temporary files of writes a kill interrupted
    check_writable(out)  # a read-only or full folder fails before the predictions, not after
    pred = predict(loaded, split, combine=combine, device=device)
    temps = None
    if calibrate:
        if splits.val is None:
            raise ValueError("--calibrate needs a validation split (data.val_fraction > 0 in the runs' config)")
        temps = fit_temperatures(predict(loaded, splits.val, combine=combine, device=device))
    rows = evaluate(pred, bins=bins, temperatures=temps, intervals=intervals)
    curves = {}
    y = pred.targets
    shown = range(len(loaded)) if len(loaded) <= 3 else [0]
    for i in shown:
        curves[Path(pred.names[i]).name or pred.names[i]] = (pred.member_probs(i), y)
    curves[f"ensemble of {len(loaded)} ({combine})"] = (pred.probs, y)
    if temps:
        curves[f"ensemble, T={temps['ensemble']:.3g}"] = ((pred.ensemble_logits() / temps["ensemble"]).softmax(-1), y)
    png = reliability_diagram(curves, out / "reliability.png", bins=bins)
    result = {"members": [m.name for m in loaded], "data": data, "combine": combine, "bins": bins, "rows": rows,
              "temperatures": temps, "reliability": str(png)}
    write_json(out / "ensemble.json", result)
    save_torch({"logits": pred.logits, "targets": y}, out / "logits.pt")
    return result
