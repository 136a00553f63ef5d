"""The hand-run alternative to an ablation: the same trials one after another in one process.

Times one trial of every arm (seed 0) after a warm-up trial, in a single process as a plain
loop would run them, and multiplies by the number of seeds. Compare with the wall time of
`trickbag ablate` on the same config (docs/results/).

Run: python benchmarks/ablation_sequential.py --config configs/cifar10_ablation.yaml [overrides]
"""

from __future__ import annotations

import argparse
import time

import torch

from trickbag.ablation.runner import spec_from_config
from trickbag.ablation.trial import _splits
from trickbag.train.build import build_run
from trickbag.train.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    base = load_config(args.config, args.overrides)
    spec = spec_from_config(base)
    torch.backends.cudnn.benchmark = True

    def trial(arm) -> float:
        cfg = load_config(spec.arm_config(arm, 0))
        cfg.source = base.source
        run = build_run(cfg, splits=_splits(cfg))
        start = time.perf_counter()
        run.fit()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - start

    warm = trial(spec.arms[0])
    times = {arm.label: trial(arm) for arm in spec.arms}
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"device: {device}; warm-up trial {warm:.1f}s; one trial per arm, alone, one process:")
    for label, t in times.items():
        print(f"  {label:<34} {t:6.2f}s")
    total = spec.seeds * sum(times.values())
    print(f"sequential estimate for {len(spec.arms)} arms x {spec.seeds} seeds: {total:.0f}s ({total / 60:.1f} min)")


if __name__ == "__main__":
    main()
