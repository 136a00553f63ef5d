"""Precision and recall of confident learning on each model type's out-of-sample
probabilities alone, against their average, from the probabilities `trickbag clean` cached
in docs/results/clean/noise-*/ (no training):

    python docs/results/clean/per_model.py
"""

from __future__ import annotations

from pathlib import Path

import torch

from trickbag.clean import agreement_issues, find_label_issues, precision_recall
from trickbag.train.build import load_splits
from trickbag.train.config import load_config

HERE = Path(__file__).parent
CONFIG = "configs/fashion_mnist_clean.yaml"

clean = load_splits(load_config(CONFIG, ["data.label_noise=null"])).train.targets
print("| noise | probabilities | out-of-sample acc. (true labels) | flagged | precision | recall |")
print("| --- | --- | --- | --- | --- | --- |")
for folder in sorted(HERE.glob("noise-*")):
    rate = int(folder.name.split("-")[1]) / 100
    noisy = load_splits(load_config(CONFIG, [f"data.label_noise.rate={rate}"])).train.targets
    truth = noisy != clean
    probs = {p.stem.removeprefix("probs-"): torch.load(p, weights_only=True) for p in sorted(folder.glob("probs-*.pt"))}
    rows = {**probs, "average of the three": torch.stack(list(probs.values())).mean(0)}
    for name, p in rows.items():
        pr = precision_recall(find_label_issues(p, noisy), truth)
        acc = float((p.argmax(1) == clean).double().mean())
        print(f"| {rate:.0%} | {name} | {acc:.4f} | {pr['flagged']} | {pr['precision']:.3f} | {pr['recall']:.3f} |")
    pr = precision_recall(agreement_issues(list(probs.values()), noisy)[0], truth)
    print(f"| {rate:.0%} | agreement rule (all three) | | {pr['flagged']} | {pr['precision']:.3f} | {pr['recall']:.3f} |")
