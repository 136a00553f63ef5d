"""The ``trickbag gan`` report: a table per method over seeds, sample PNGs, and the critic's
Wasserstein estimate beside the sample quality along training."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trickbag._atomic import save_figure
from trickbag.report import Page
from trickbag.report.plots import COLORS, pyplot

__all__ = ["render", "sample_png", "spearman"]

_NAMES = {"gan": "GAN (non-saturating)", "wgan": "WGAN (clipping, RMSProp)", "wgan_gp": "WGAN-GP (Adam)"}


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties), no SciPy needed.

    Example:
        >>> spearman([1, 2, 3, 4], [10, 20, 30, 25])
        0.8
    """
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    if len(a) != len(b) or len(a) < 3:
        return math.nan
    ra, rb = ranks(list(a)), ranks(list(b))
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var else math.nan


@torch.no_grad()
def sample_png(generator: nn.Module, cfg, path: Path, *, mixture=None, device="cpu", seed: int = 0) -> Path:
    """Samples of ``generator``: a scatter over the mixture's modes (3-sd circles), or an 8x8
    grid of images."""
    plt = pyplot()
    was = generator.training
    generator.eval()
    gen = torch.Generator().manual_seed(20_000 + seed)
    if mixture is not None:
        z = torch.randn(cfg.eval.samples, generator.z_dim, generator=gen).to(device)
        samples = generator(z).cpu()
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
        ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.35, color=COLORS[0], label="generated")
        for cx, cy in mixture.centers.tolist():
            ax.add_patch(plt.Circle((cx, cy), cfg.eval.sds * mixture.std, fill=False, color=COLORS[3], lw=0.8))
        ax.scatter(mixture.centers[:, 0], mixture.centers[:, 1], marker="x", s=14, color=COLORS[3], label="modes")
        lim = float(mixture.centers.abs().max()) * 1.5
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(path.stem.replace("samples_", ""), fontsize=9)
    else:
        z = torch.randn(64, generator.z_dim, generator=gen).to(device)
        images = ((generator(z).cpu() + 1) / 2).clamp(0, 1)
        grid = images.reshape(8, 8, 28, 28).permute(0, 2, 1, 3).reshape(8 * 28, 8 * 28)
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
        ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
        ax.set_title(path.stem.replace("samples_", ""), fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)  # atomically
    plt.close(fig)
    generator.train(was)
    return path


def _curves(runs: dict[str, Any], methods: list[str], key: str, path: Path, quality: str, quality_label: str) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(methods), figsize=(4.3 * len(methods), 3.4), squeeze=False)
    for ax, name in zip(axes[0], methods):
        twin = ax.twinx()
        for run in (r for r in runs.values() if r["method"] == name):
            evals = [h for h in run["history"] if quality in h]
            steps = [h["step"] for h in evals]
            alpha = 1.0 if run["seed"] == 0 else 0.35
            if evals and key in evals[0]:
                ax.plot(steps, [h[key] for h in evals], color=COLORS[0], alpha=alpha, lw=1.2)
            twin.plot(steps, [h[quality] for h in evals], color=COLORS[1], alpha=alpha, lw=1.2, ls="--")
        ax.set_title(_name(name), fontsize=10)
        ax.set_xlabel("generator step")
        ax.set_ylabel("Wasserstein estimate" if key == "w_estimate" else key, color=COLORS[0])
        twin.set_ylabel(quality_label, color=COLORS[1])
    fig.tight_layout()
    save_figure(fig, path, dpi=110)  # atomically
    plt.close(fig)
    return path


def render(out: str | Path) -> dict[str, Any]:
    """Write ``report.md`` and ``report.html`` (and ``curves.png``) from ``out/results.json``."""
    out = Path(out)
    data = json.loads((out / "results.json").read_text())
    cfg, runs = data["config"], data["runs"]
    images = cfg["data"]["name"] == "fashion_mnist"
    from trickbag.gan.runner import file_label, load_gan_config

    methods = [label for label, _ in load_gan_config(cfg).recipes()]
    page = Page(f"GANs on {cfg['data']['name']}: {', '.join(methods)}")
    page.paragraph(
        f"{cfg['seeds']} seed(s) per method, {cfg['train']['steps']} generator steps of batch {cfg['train']['batch_size']} "
        f"each, model {cfg['model']['name']} ({', '.join(f'{k} {v}' for k, v in cfg['model'].items() if k != 'name')}), "
        f"on {cfg['train']['device']} with {cfg['train']['threads'] or 'all'} thread(s). Train time: wall-clock seconds "
        "of training per run (evaluations excluded); CPU time: the process's CPU seconds per run (evaluations "
        "included), steadier than wall time on a shared machine.")
    rows, summary = [], {}
    for name in methods:
        mine = sorted((r for r in runs.values() if r["method"] == name), key=lambda r: r["seed"])
        if not mine:
            continue
        finals = [r["final"] for r in mine]
        times = [r["final"].get("train_time", r["wall_time"]) for r in mine]
        cpu = [r["cpu_time"] for r in mine]
        w = [f.get("w_estimate") for f in finals if f.get("w_estimate") is not None]
        recipe = mine[0]["recipe"]
        setting = (f"n_critic {recipe['n_critic']}, {recipe['optimizer']} lr {recipe['lr']:g}"
                   + (f", clip {recipe['clip']}" if recipe.get("clip") else "")
                   + (f", lambda {recipe['gp_weight']:g}" if recipe.get("gp_weight") else ""))
        row = {"method": name, "n": len(mine), "setting": setting, "time": sum(times) / len(times),
               "cpu": sum(cpu) / len(cpu)}
        if images:
            fd = [f["fd_ours"] for f in finals]
            corr = []
            for r in mine:
                evals = [h for h in r["history"] if "fd_ours" in h and "w_estimate" in h]
                corr.append(spearman([h["w_estimate"] for h in evals], [h["fd_ours"] for h in evals]))
            best = [min(h["fd_ours"] for h in r["history"] if "fd_ours" in h) for r in mine]
            row.update(fd=sum(fd) / len(fd), best_fd=sum(best) / len(best),
                       corr=sum(corr) / len(corr) if all(not math.isnan(c) for c in corr) and corr else math.nan,
                       w=sum(w) / len(w) if w else math.nan)
            rows.append([_name(name), setting, row["n"], f"{row['fd']:.3g}", f"{row['best_fd']:.3g}",
                         "n/a (no critic estimate)" if math.isnan(row["w"]) else f"{row['w']:.3g}",
                         "n/a" if math.isnan(row["corr"]) else f"{row['corr']:+.2f}",
                         f"{row['time']:.0f}", f"{row['cpu']:.0f}"])
        else:
            modes = [f["modes_covered"] for f in finals]
            hq = [f["high_quality"] for f in finals]
            total = cfg["data"].get("modes") or cfg["data"].get("side", 5) ** 2
            m, h = _stats(modes), _stats(hq)
            row.update(modes=m, hq=h, all_modes=sum(1 for v in modes if v == total), total=total)
            loose = [f["modes_reached"] for f in finals if "modes_reached" in f]
            median = [f["median_sd"] for f in finals if "median_sd" in f]
            if loose:
                row.update(reached=_stats(loose), median_sd=_stats(median))
            rows.append([_name(name), setting, row["n"], f"{m['mean']:.1f} ± {m['sd']:.1f}",
                         f"{m['min']:.0f} to {m['max']:.0f}", f"{row['all_modes']}/{len(mine)}",
                         f"{h['mean']:.3f} ± {h['sd']:.3f}",
                         f"{row['reached']['mean']:.1f} ± {row['reached']['sd']:.1f}" if loose else "",
                         f"{row['median_sd']['mean']:.1f}" if loose else "",
                         f"{row['time']:.0f}", f"{row['cpu']:.0f}"])
        summary[name] = row
    if images:
        cls = data.get("classifier") or {}
        page.heading("Sample quality and the critic's estimate")
        page.paragraph(
            "fd_ours is a Fréchet distance between Gaussians fitted to features of real and generated images, where "
            f"the features are those of our own small CNN trained on Fashion-MNIST ({cls.get('features')}-d pooled "
            f"penultimate layer, {cls.get('test_acc', float('nan')):.3f} test accuracy, {cls.get('epochs')} epochs): "
            "lower is better. It is not FID (no Inception network) and its numbers compare only with each other. "
            f"Real training images score {cls.get('fd_real_floor', float('nan')):.3g} against the same reference "
            f"({cfg['eval']['samples']} images against {cfg['eval']['real_samples']} test images), the floor.")
        page.table(["method", "setting", "seeds", "final fd_ours", "best fd_ours", "final W estimate",
                    "Spearman(W estimate, fd_ours)", "train time (s)", "CPU time (s)"], rows)
        page.paragraph("Spearman correlation over the evaluations of each run (averaged over seeds): positive "
                       "means the critic's Wasserstein estimate falls as the samples improve, the claim that the "
                       "WGAN loss tracks sample quality. The non-saturating GAN has no such estimate.")
        curves = _curves(runs, methods, "w_estimate", out / "curves.png", "fd_ours", "fd_ours (ours, not FID)")
    else:
        page.heading("Mode coverage")
        page.paragraph(
            f"{cfg['eval']['samples']} samples per run after the last step. A sample is high quality within "
            f"{cfg['eval']['sds']:g} standard deviations of its nearest mode; a mode is covered when it holds at "
            f"least {cfg['eval']['min_share']:g} of its fair share of high-quality samples. The looser count "
            f"applies the same rule within {cfg['eval'].get('reach_sds', 10):g} standard deviations; the median distance of "
            "a sample to its nearest mode, in standard deviations, tells sharp samples from blurred ones.")
        page.table(["method", "setting", "seeds", "modes covered (mean ± sd)", "range", "runs with every mode",
                    "high-quality share", f"modes within {cfg['eval'].get('reach_sds', 10):g} sd",
                    "median distance (sd)", "train time (s)", "CPU time (s)"], rows)
        curves = _curves(runs, methods, "w_estimate", out / "curves.png", "high_quality", "high-quality share")
    page.heading("Samples (seed 0)")
    for name in methods:
        png = out / f"samples_{file_label(name)}_seed0.png"
        if png.exists():
            page.image(png.name, _name(name))
    page.heading("Training curves")
    page.image(curves.name, "the critic's Wasserstein estimate (solid, left axis) and sample quality (dashed, right "
                            "axis) per generator step; seed 0 dark, other seeds light")
    prov = data.get("provenance", {})
    page.heading("Provenance")
    page.code(json.dumps(prov, indent=1) + "\n" + json.dumps(cfg, indent=1), "json")
    files = page.write(out)
    return {"out": str(out), "report": [str(f) for f in files], "summary": summary}


def _name(label: str) -> str:
    base, _, changes = label.partition(":")
    return _NAMES.get(base, base) + (f" [{changes}]" if changes else "")


def _stats(values: list[float]) -> dict[str, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "sd": sd, "min": min(values), "max": max(values)}
