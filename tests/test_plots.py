"""Plots a practitioner can read (issue 24 item 4): tick labels on short log axes, ReLU heat maps
without an empty half, reliability gaps in the legend's colour, the LR range test's raw loss in
view, class names in full."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("matplotlib")
import matplotlib.figure  # noqa: E402

from trickbag.report.plots import plain_log_ticks, pyplot  # noqa: E402


@pytest.fixture
def saved(monkeypatch):
    """The figures the code under test saves, drawn, before it closes them."""
    figures = []
    real = matplotlib.figure.Figure.savefig

    def keep(self, *args, **kwargs):
        self.canvas.draw()
        figures.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    return figures


def visible_labels(ax, axis="y") -> list[str]:
    target = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())
    ticks = target.get_major_ticks() + target.get_minor_ticks()
    return [t.label1.get_text() for t in ticks
            if t.label1.get_visible() and t.label1.get_text() and lo <= t.get_loc() <= hi]


@pytest.mark.parametrize("low, high", [(0.3, 0.9), (0.05, 0.5), (0.08, 0.12), (1e-4, 10)])
def test_a_short_log_axis_has_at_least_two_labels(low, high):
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [low, high])
    ax.set_yscale("log")
    plain_log_ticks(ax)
    fig.canvas.draw()
    labels = visible_labels(ax)
    plt.close(fig)
    assert len(labels) >= 2, labels  # before: none for (0.3, 0.9), one ("0.1") for (0.05, 0.5)
    assert all(float(t) > 0 and "e+" not in t for t in labels)


def test_the_monitor_loss_and_grad_norm_log_panels_are_labelled(tmp_path, saved):
    from trickbag.monitor.report import _loss_plot, _series_plot

    steps = [{"step": s, "loss": 0.9 - 0.5 * s / 100, "lr": 0.1} for s in range(0, 101, 5)]
    epochs = [{"step": 50, "train_loss": 0.7, "val_loss": 0.75, "epoch": 1}, {"step": 100, "train_loss": 0.45, "val_loss": 0.5, "epoch": 2}]
    _loss_plot(steps, epochs, tmp_path / "loss.png")
    log_panel = saved[-1].axes[1]
    assert log_panel.get_yscale() == "log" and len(visible_labels(log_panel)) >= 2
    samples = [{"step": s, "g": [0.05 + 0.3 * s / 100, 0.08]} for s in range(0, 101, 10)]
    _series_plot(samples, ["conv", "fc"], lambda s, i: s["g"][i], tmp_path / "grad_norms.png", "gradient norm", log=True)
    assert len(visible_labels(saved[-1].axes[0])) >= 2


def test_relu_heat_maps_have_no_empty_half(tmp_path, saved):
    from trickbag.monitor.report import _distributions

    bins = 20
    relu = [0.0] * (bins // 2) + [5.0] + [1.0] * (bins // 2 - 1)  # the upper half only, as after a ReLU
    signed = [1.0] * bins
    samples = [{"step": s, "act_hist": [relu, signed], "act_range": [2.0, 3.0]} for s in (0, 10, 20)]
    assert _distributions(samples, ["relu", "conv"], "act_hist", "act_range", tmp_path / "a.png", "activations")
    relu_ax, signed_ax = saved[-1].axes[:2]
    assert relu_ax.get_ylim() == pytest.approx((0.0, 2.0))
    assert signed_ax.get_ylim() == pytest.approx((-3.0, 3.0))


def test_reliability_gap_bars_are_drawn_in_the_legend_colour(tmp_path, saved):
    from matplotlib.colors import to_rgba

    from trickbag.ensemble import reliability_diagram

    torch.manual_seed(0)
    y = torch.randint(0, 4, (2000,))
    logits = torch.randn(2000, 4)
    logits[torch.arange(2000), y] += 1.5
    reliability_diagram({"under": ((logits / 3).softmax(-1), y), "over": ((logits * 3).softmax(-1), y)},
                        tmp_path / "r.png", bins=10)
    ax = saved[-1].axes[0]
    legend = {t.get_text(): h for t, h in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles)}
    gap_handle = legend["gap to confidence"]
    gaps = [p for c in ax.containers if c.get_label() == "gap to confidence" for p in c.patches]
    assert gaps
    for p in gaps:  # opaque lines, no translucent fill to blend with the blue bars beneath
        assert not p.get_fill() and p.get_hatch() and p.get_edgecolor() == to_rgba("#d62728")
        assert p.get_edgecolor() == gap_handle.get_edgecolor() and p.get_hatch() == gap_handle.get_hatch()


def test_lr_find_plot_keeps_the_raw_loss_in_view(tmp_path, saved):
    from trickbag.monitor import LRFindResult, plot_lr_find

    lrs = [1e-5 * 10 ** (i / 20) for i in range(100)]
    raw = [2.3 - 1.8 / (1 + math.exp(-(i - 50) / 6)) + (0.25 if i % 3 == 0 else -0.25) for i in range(100)]
    smoothed = [sum(raw[max(0, i - 4):i + 1]) / len(raw[max(0, i - 4):i + 1]) for i in range(100)]
    r = LRFindResult(lrs, raw, smoothed, steepest=lrs[50], min_over_10=lrs[90] / 10, cyclic_bounds=(lrs[80], lrs[85]),
                     stopped_early=False)
    plot_lr_find(r, tmp_path / "lr.png")
    lo, hi = saved[-1].axes[0].get_ylim()
    assert lo <= min(raw) and hi >= max(raw[:50])


def test_lr_find_smooths_with_a_bias_corrected_ema_a_fifth_of_a_decade_wide():
    """fastai's bias-corrected EMA, its window tied to the sweep: 100 steps over 6 decades is 16.5
    steps a decade, a window of 3.3 steps, so the smoothed curve trails the raw one by 2.3 steps
    (0.14 decade; fastai's fixed beta 0.98 trails by 49 steps, 3 decades here)."""
    from torch import nn

    from trickbag.data import ArrayDataset, DeviceLoader
    from trickbag.monitor import lr_find
    from trickbag.train import Trainer

    torch.manual_seed(0)
    x = torch.randn(2048, 10)
    data = ArrayDataset(x, x @ torch.randn(10, 1))
    t = Trainer(nn.Linear(10, 1), DeviceLoader(data, 64), loss=nn.functional.mse_loss,
                optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1), epochs=1, progress=False)
    r = lr_find(t, min_lr=1e-5, max_lr=10, steps=100)
    beta = 1 - 1 / (99 / 6 / 5)
    avg, expected = 0.0, []
    for i, v in enumerate(r.losses[:len(r.smoothed)]):
        avg = beta * avg + (1 - beta) * v
        expected.append(avg / (1 - beta ** (i + 1)))
    assert r.smoothed == pytest.approx(expected, rel=1e-12)
    assert beta / (1 - beta) / (99 / 6) < 0.2  # the lag, in decades


def test_suspect_titles_keep_long_class_names_whole(tmp_path, saved):
    from trickbag.clean.runner import _image_grid

    name = "a very long class name, longer than any title line"
    _image_grid(torch.zeros(3, 1, 8, 8), [f"#0: {name}\n-> Ankle boot (0.91)", "#1: T-shirt/top\n-> Shirt (0.8)",
                                          "#2: Bag\n-> Bag (0.5)"], tmp_path / "s.png")
    fig = saved[-1]
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert " ".join(titles[0].split()) == f"#0: {name} -> Ankle boot (0.91)" and "T-shirt/top" in titles[1]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    for ax in fig.axes[:3]:  # every title inside the figure
        box = ax.title.get_window_extent(renderer)
        assert box.x0 >= 0 and box.y1 <= fig.bbox.height + 1 and box.x1 <= fig.bbox.width + 1
