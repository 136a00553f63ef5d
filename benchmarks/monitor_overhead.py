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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.gpu:
        device, precision, batch = torch.device("cuda"), "bf16", 512
        torch.backends.cudnn.benchmark = True
        data = ArrayDataset(torch.randn(8192, 3, 32, 32), torch.randint(0, 10, (8192,)))
        make = lambda: resnet_cifar(18)  # noqa: E731
        label = "ResNet-18, batch 512, bf16, channels_last"
    else:
        torch.set_num_threads(2)
        device, precision, batch = torch.device("cpu"), "fp32", 64
        data = ArrayDataset(torch.randn(4096, 1, 28, 28), torch.randint(0, 10, (4096,)))
        make = lambda: small_cnn(1, 10, width=16)  # noqa: E731
        label = "small CNN (width 16), batch 64, fp32, 2 threads"
    variants = {"no monitor": lambda: [], "Monitor() (default: ~20 samples a run)": lambda: [Monitor(diagnose=False)],
                "Monitor(every_steps=50)": lambda: [Monitor(50, diagnose=False)],
                "Monitor(every_steps=10)": lambda: [Monitor(10, diagnose=False)]}
    for name, cbs in variants.items():  # warm-up
        timed(make, data, batch, 20, device, precision, cbs())
    times = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, cbs in variants.items():
            times[name].append(timed(make, data, batch, args.steps, device, precision, cbs()))
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {dev}, torch {torch.__version__}; {label}; {args.steps} steps x {args.repeats} interleaved repeats")
    base = statistics.median(times["no monitor"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"  {name:<26} {m * 1e3:8.3f} ms/step   overhead {100 * (m / base - 1):+6.1f} %")
    print("goal: at most 10 % at the default interval")


if __name__ == "__main__":
    main()
