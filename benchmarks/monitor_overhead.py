"""The Monitor's cost: time per step with and without it, side by side in one run.

CPU (default): a small CNN on synthetic 28x28 images. GPU (--gpu): ResNet-18 on synthetic
32x32 images, batch 512, bf16, channels-last. Both: the Monitor at its default interval
(about 20 samples a run, at most 50 steps apart), at every 50 and at every 10 steps, each timed over the same number of steps as the plain
Trainer, interleaved, medians of the repeats.

Run: python benchmarks/monitor_overhead.py [--gpu] [--steps 200 --repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import sync  # noqa: E402

from trickbag.data import ArrayDataset, DeviceLoader  # noqa: E402
from trickbag.models import resnet_cifar, small_cnn  # noqa: E402
from trickbag.monitor import Monitor  # noqa: E402
from trickbag.train import Trainer  # noqa: E402


def timed(make_model, data, batch, steps, device, precision, callbacks) -> float:
    torch.manual_seed(0)
    model = make_model()
    cl = device.type == "cuda"
    t = Trainer(model, DeviceLoader(data, batch, device=device, seed=0, channels_last=cl), steps=steps,
                optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9), device=device,
                precision=precision, channels_last=cl, callbacks=callbacks, progress=False)
    t._prepare()
    sync(device)
    start = time.perf_counter()
    t.fit()
    sync(device)
    return (time.perf_counter() - start) / steps


#: The variants timed: a key, its label, and the callbacks it adds.
VARIANTS = {
    "none": ("no monitor", lambda: []),
    "default": ("Monitor() (default: ~20 samples a run)", lambda: [Monitor(diagnose=False)]),
    "every_50": ("Monitor(every_steps=50)", lambda: [Monitor(50, diagnose=False)]),
    "every_10": ("Monitor(every_steps=10)", lambda: [Monitor(10, diagnose=False)]),
}


def measure(gpu: bool, steps: int = 200, repeats: int = 5, variants: tuple[str, ...] = tuple(VARIANTS),
            warmup_steps: int = 20, examples: int = 4096) -> dict:
    """Median seconds per step of each variant (interleaved repeats) and its overhead over the
    plain Trainer (``"none"``, always timed) in per cent; on the CPU, ``examples`` synthetic images."""
    if gpu:
        device, precision, batch = torch.device("cuda"), "bf16", 512
        torch.backends.cudnn.benchmark = True
        data = ArrayDataset(torch.randn(8192, 3, 32, 32), torch.randint(0, 10, (8192,)))
        make = lambda: resnet_cifar(18)  # noqa: E731
        label = "ResNet-18, batch 512, bf16, channels_last"
    else:
        torch.set_num_threads(2)
        device, precision, batch = torch.device("cpu"), "fp32", 64
        data = ArrayDataset(torch.randn(examples, 1, 28, 28), torch.randint(0, 10, (examples,)))
        make = lambda: small_cnn(1, 10, width=16)  # noqa: E731
        label = "small CNN (width 16), batch 64, fp32, 2 threads"
    keys = ["none", *(k for k in variants if k != "none")]
    for key in keys:  # warm-up
        timed(make, data, batch, warmup_steps, device, precision, VARIANTS[key][1]())
    times: dict[str, list[float]] = {key: [] for key in keys}
    for _ in range(repeats):
        for key in keys:
            times[key].append(timed(make, data, batch, steps, device, precision, VARIANTS[key][1]()))
    medians = {key: statistics.median(ts) for key, ts in times.items()}
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "setup": label, "steps": steps, "repeats": repeats,
        "labels": {key: VARIANTS[key][0] for key in keys},
        "ms_per_step": {key: 1e3 * m for key, m in medians.items()},
        "overhead_pct": {key: 100 * (m / medians["none"] - 1) for key, m in medians.items()},
        "samples_ms": {key: [1e3 * t for t in ts] for key, ts in times.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    r = measure(args.gpu, args.steps, args.repeats)
    print(f"device: {r['device']}, torch {r['torch']}; {r['setup']}; {args.steps} steps x {args.repeats} "
          "interleaved repeats")
    for key, label in r["labels"].items():
        print(f"  {label:<26} {r['ms_per_step'][key]:8.3f} ms/step   overhead {r['overhead_pct'][key]:+6.1f} %")
    print("goal: at most 3 % at the default interval")


if __name__ == "__main__":
    main()
