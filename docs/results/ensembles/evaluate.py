"""Compare the runs trained by train.sh on the test split: accuracy, NLL and ECE with 95%
bootstrap intervals over test images, before and after temperature scaling fitted on the
validation split; writes report.md and reliability.png here.

    python docs/results/ensembles/evaluate.py runs/ensembles
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch

from trickbag._provenance import provenance
from trickbag.calibration import accuracy, expected_calibration_error, fit_temperature, negative_log_likelihood
from trickbag.ensemble import bootstrap_interval, load_member, predict, reliability_diagram
from trickbag.ensemble.members import run_splits
from trickbag.report import Page

HERE = Path(__file__).parent
SAMPLES = 1000


def main(root: Path) -> None:
    members = sorted(root.glob("member-*"))
    snaps = sorted((root / "snapshot" / "snapshots").glob("snapshot-*.pt"))
    groups = {
        "one member (3 epochs; mean of 5)": None,
        "deep ensemble: 5 members x 3 epochs": members,
        "snapshot ensemble: 5 cycles in 15 epochs": snaps,
        "SWA: 15 epochs, last 5 averaged": [root / "swa"],
        "EMA (decay 0.99): 15 epochs": [root / "ema"],
    }
    splits = run_splits(load_member(members[0]).config)
    test, val = splits.test, splits.val
    y = test.targets
    rows, curves = [], {}
    single = []
    for m in members:
        p = predict([m], test).probs
        single.append({"acc": float(accuracy(p, y)), "nll": float(negative_log_likelihood(p, y)),
                       "ece": float(expected_calibration_error(p, y))})
    for name, paths in groups.items():
        if paths is None:
            row = {"name": name, **{k: statistics.fmean(s[k] for s in single) for k in ("acc", "nll", "ece")},
                   "sd": {k: statistics.stdev(s[k] for s in single) for k in ("acc", "nll", "ece")}}
            rows.append(row)
            continue
        out = predict(paths, test)
        p = out.probs
        t = fit_temperature(predict(paths, val).ensemble_logits(), val.targets)
        pt = (out.ensemble_logits() / t).softmax(1)
        row = {"name": name, "members": len(paths), "temperature": t}
        for key, fn in (("acc", accuracy), ("nll", negative_log_likelihood), ("ece", expected_calibration_error)):
            row[key] = float(fn(p, y))
            row[f"{key}_ci"] = bootstrap_interval(p, y, fn, samples=SAMPLES)
        row["nll_T"] = float(negative_log_likelihood(pt, y))
        row["ece_T"] = float(expected_calibration_error(pt, y))
        row["ece_T_ci"] = bootstrap_interval(pt, y, expected_calibration_error, samples=SAMPLES)
        rows.append(row)
        curves[name.split(":")[0]] = (p, y)
    curves = {"one member": (predict([members[0]], test).probs, y), **curves}
    reliability_diagram(curves, HERE / "reliability.png")
    results = {"rows": rows, "single_members": single, "provenance": provenance(),
               "train_log": [json.loads((d / "results.json").read_text())["wall_time"] for d in [*members, root / "snapshot",
                                                                                                    root / "swa", root / "ema"]]}
    (HERE / "results.json").write_text(json.dumps(results, indent=1))
    report(results)


def report(results: dict) -> None:
    ci = lambda r, k: f"[{r[k][0]:.4f}, {r[k][1]:.4f}]" if k in r else ""  # noqa: E731
    page = Page("Ensembles vs snapshot ensembles vs SWA vs EMA at equal training compute (Fashion-MNIST, CPU)")
    page.paragraph(
        "configs/fashion_mnist_ensemble.yaml: a small CNN (width 16) on 10,000 Fashion-MNIST training images "
        "(hflip), SGD with Nesterov momentum. Every method gets 15 epochs of training: five independent 3-epoch "
        "members (seeds 1-5, one-cycle schedule), or one 15-epoch run (seed 1) with a snapshot ensemble (5 cosine "
        "cycles), SWA (constant lr 0.05, then swa_lr 0.01, weights averaged over the last 5 epochs, BatchNorm "
        "recomputed) or EMA (decay 0.99, one-cycle). Test split: the 10,000 Fashion-MNIST test images. Intervals: "
        f"95% percentile bootstrap over test images ({SAMPLES} resamples), so they show test-set noise, not "
        "training-seed noise (the first row's sd over the five members shows the latter). ECE: 15 equal-width bins. "
        "T: the temperature fitted on the 6,000-image validation split. ECE is biased upwards on resampled "
        "data (duplicates sharpen bins), so its percentile interval can sit above a small point estimate.")
    headers = ["method", "test acc", "95% CI", "NLL", "95% CI", "ECE", "95% CI", "T", "NLL after T", "ECE after T", "95% CI"]
    table = []
    for r in results["rows"]:
        if "sd" in r:
            table.append([r["name"], f"{r['acc']:.4f} (sd {r['sd']['acc']:.4f})", "", f"{r['nll']:.4f} (sd {r['sd']['nll']:.4f})",
                          "", f"{r['ece']:.4f} (sd {r['sd']['ece']:.4f})", "", "", "", "", ""])
        else:
            table.append([r["name"], r["acc"], ci(r, "acc_ci"), r["nll"], ci(r, "nll_ci"), r["ece"], ci(r, "ece_ci"),
                          f"{r['temperature']:.3f}", r["nll_T"], r["ece_T"], ci(r, "ece_T_ci")])
    page.table(headers, table)
    page.image("reliability.png", "Reliability diagrams on the test split (before temperature scaling)")
    prov = results["provenance"]
    page.heading("Provenance")
    page.bullets([
        "commands: bash docs/results/ensembles/train.sh runs/ensembles; python docs/results/ensembles/evaluate.py runs/ensembles",
        f"trickbag {prov['trickbag']}, git {prov['git']}, torch {prov['torch']}, {prov['hardware'].get('cpu')}",
        "training wall times (s), members 1-5, snapshot, SWA, EMA: " + ", ".join(f"{t:.0f}" for t in results["train_log"]),
    ])
    page.write(HERE)
    print((HERE / "report.md").read_text())


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ensembles"))
