"""The README's adversarial-training and GAN numbers are the committed results' numbers.

Each figure quoted in the README's "Adversarial training and GANs" section is recomputed here
from the per-run records in docs/results/, so that a re-run (or an edited table) that
disagrees fails.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest

from trickbag.gan.report import spearman

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Adversarial training and GANs")
    return text[start:text.index("\n## ", start + 1)]


def rows(records: list[dict]) -> dict[str, list[dict]]:
    arms: dict[str, list[dict]] = {}
    for r in records:
        arms.setdefault(r["arm"], []).append(r)
    return arms


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pct(values: list[float], digits: int) -> str:
    return f"{100 * statistics.mean(values):.{digits}f}%"


def test_mr_table_matches_the_ten_folds():
    arms = rows([r for r in jsonl(RESULTS / "mr_adversarial" / "runs.jsonl") if r["variant"] == "small"])
    readme = section()
    for arm, label in [("none", "none"), ("fgm:epsilon=0.5", "FGM, epsilon 0.5"),
                       ("pgd_embedding:epsilon=0.5,alpha=0.25,steps=3", "PGD-3 on the embedding, epsilon 0.5")]:
        assert sorted(r["seed"] for r in arms[arm]) == list(range(10)), arm  # the ten folds, each once
        acc = pct([r["test"]["test_acc"] for r in arms[arm]], 2)
        assert re.search(rf"^\| {re.escape(label)} \| {re.escape(acc)} \|", readme, flags=re.M), (label, acc)


def test_fashion_mnist_adversarial_table_matches_the_runs():
    arms = rows(jsonl(RESULTS / "fashion_mnist_adversarial" / "runs.jsonl"))
    readme = section()
    for arm, label in [("none", "standard"), ("fgsm:eps=0.1,alpha=0.1,ratio=1.0,space=data", "FGSM (no random start)"),
                       ("fast_fgsm:eps=0.1", "fast FGSM"), ("pgd_training:eps=0.1,alpha=0.05,steps=5", "PGD-5 training")]:
        assert sorted(r["seed"] for r in arms[arm]) == [0, 1, 2], arm
        clean = pct([r["test"]["test_acc"] for r in arms[arm]], 1)
        robust = pct([r["test"]["test_robust_acc"] for r in arms[arm]], 1)
        assert re.search(rf"^\| {re.escape(label)} \| {re.escape(clean)} \| {re.escape(robust)}", readme, flags=re.M), \
            (label, clean, robust)
    stopped = sum(1 for r in arms["fgsm:eps=0.1,alpha=0.1,ratio=1.0,space=data"] if r["stopped"])
    assert f"({stopped} of 3 runs stopped by the guard)" in readme


def runs(folder: str) -> dict[str, list[dict]]:
    saved = json.loads((RESULTS / folder / "results.json").read_text())
    out: dict[str, list[dict]] = {}
    for run in saved["runs"].values():
        out.setdefault(run["method"].split(":")[0], []).append(run)  # "wgan_gp:lr=0.001" -> "wgan_gp"
    return out


def test_gan_mode_coverage_sentence_matches_the_long_runs():
    readme = " ".join(section().split())
    ring, grid = runs("gan_ring_long"), runs("gan_grid_long")
    assert all(len(v) == 5 for v in [*ring.values(), *grid.values()])
    gan_ring = statistics.mean(r["final"]["modes_covered"] for r in ring["gan"])
    missed = sum(1 for r in ring["gan"] if r["final"]["modes_covered"] < 8)
    gp_cov = statistics.mean(r["final"]["modes_covered"] for r in ring["wgan_gp"])
    gp_reached = [r["final"]["modes_reached"] for r in ring["wgan_gp"]]
    gan_grid = statistics.mean(r["final"]["modes_covered"] for r in grid["gan"])
    assert f"covered {gan_ring:.1f} of 8 ring modes" in readme
    assert f"dropped modes in {missed} of 5 seeds" in readme
    assert f"covered only {gan_grid:.0f} of 25 grid modes" in readme
    assert gp_reached == [8] * 5 and "(8 of 8 within 10 sd)" in readme
    assert f"({gp_cov:.1f} covered at 3 sd)" in readme


@pytest.mark.parametrize("method, label", [("gan", "GAN (non-saturating)"), ("wgan", "WGAN (clipping, RMSProp)"),
                                           ("wgan_gp", "WGAN-GP")])
def test_gan_fashion_mnist_table_matches_the_runs(method, label):
    (run,) = runs("gan_fashion_mnist")[method]
    fd = f"{run['final']['fd_ours']:.2g}"
    evals = [h for h in run["history"] if "fd_ours" in h and "w_estimate" in h]
    corr = "n/a" if not evals else f"{spearman([h['w_estimate'] for h in evals], [h['fd_ours'] for h in evals]):+.2f}"
    assert re.search(rf"^\| {re.escape(label)} \| {re.escape(fd)} \| {re.escape(corr)} \|$", section(), flags=re.M), \
        (label, fd, corr)


def test_the_gan_commands_cpu_time_is_the_ring_runs():
    saved = json.loads((RESULTS / "gan_ring" / "results.json").read_text())
    minutes = sum(run["cpu_time"] for run in saved["runs"].values()) / 60
    assert f"{len(saved['runs'])} runs took {minutes:.1f} minutes of CPU time" in " ".join(section().split())


def test_cpu_speedrun_numbers_match_the_committed_run():
    run = RESULTS / "cifar10_speedrun_cpu"
    results = json.loads((run / "results.json").read_text())
    meta = json.loads((run / "meta.json").read_text())
    acc = f"{100 * results['test']['test_acc']:.2f}%"
    minutes = f"{results['wall_time'] / 60:.1f} min"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    card = (run / "README.md").read_text(encoding="utf-8")
    assert f"**{acc} test accuracy with TTA**" in readme and f"{minutes} of training" in readme
    assert f"**Test accuracy: {acc} with TTA**" in card and f"({minutes};" in card
    assert meta["seed"] == 0 and "seed 0" in readme and meta["command"].startswith("trickbag train --config configs/cifar10_speedrun.yaml")
    assert meta["git"].startswith("c691f54") and "`c691f54`" in card
