"""The cost of adversarial training per step, measured side by side in one run.

Each method trains the same model on the same batches through the Trainer for a few steps; the
methods take turns (round-robin, several rounds) so that whatever else runs on the machine
falls on all of them alike, and the CPU time of this process per step is compared (less
sensitive to a busy machine than wall time). Expected: about 2x for FGSM and fast FGSM and
K + 1 for PGD-K (images); about 2x for FGM and K + 1 for PGD-K or FreeLB-K on embeddings.

    python benchmarks/adversarial_overhead.py [--task images|text] [--steps 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from trickbag.train.build import build_run
from trickbag.train.config import load_config, parse_trick

ROOT = Path(__file__).resolve().parents[1]
TASKS = {
    "images": ("configs/fashion_mnist_adversarial.yaml", ["data.subset=2000", "tricks=[]"],
               ["none", "fgsm:eps=0.1,alpha=0.1,ratio=1.0,space=data", "fast_fgsm:eps=0.1",
                "pgd_training:eps=0.1,alpha=0.05,steps=5", "pgd_training:eps=0.1,alpha=0.025,steps=7"]),
    "text": ("configs/mr_textcnn_kim.yaml", ["model.embed_dim=64", "model.num_filters=64", "tricks=[]"],
             ["none", "fgm:epsilon=0.5", "pgd_embedding:epsilon=0.5,alpha=0.25,steps=3",
              "freelb:epsilon=0.5,alpha=0.3,steps=2"]),
}


def step_cpu_time(config: str, overrides: list[str], arm: str, steps: int, splits=None):
    cfg = load_config(ROOT / config, [*overrides, f"train.steps={steps}", "train.epochs=null", "train.progress=false",
                                      "data.val_fraction=0.1", "train.checkpoint_every_epochs=null"])
    if arm != "none":
        cfg.tricks = [*cfg.tricks, parse_trick(arm)]
    run = build_run(cfg, splits=splits)
    run.trainer.val_data = None  # time the training steps only
    start = time.process_time()
    run.trainer.fit()
    return (time.process_time() - start) / steps, run.splits


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=sorted(TASKS), default="images")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    config, overrides, arms = TASKS[args.task]
    times: dict[str, list[float]] = {a: [] for a in arms}
    _, splits = step_cpu_time(config, overrides, "none", args.steps)  # warm-up: data, lazy initialisation
    for _ in range(args.rounds):
        for arm in arms:
            t, splits = step_cpu_time(config, overrides, arm, args.steps, splits)
            times[arm].append(t)
    base = statistics.median(times["none"])
    print(f"{args.task}: CPU time per training step, median of {args.rounds} rounds of {args.steps} steps, "
          f"{args.threads} thread(s)")
    for arm, ts in times.items():
        m = statistics.median(ts)
        print(f"  {arm:48s} {1000 * m:8.1f} ms   {m / base:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
