"""Step time of torch's foreach RAdam, trickbag's FusedRAdam and torch's fused AdamW, side by side.

The parameters are ResNet-18's (the CIFAR variant, 11.2 M) in float32. All three update
p, m and v from g: at least 16 bytes read and 12 written per parameter, so the
memory-bandwidth floor is 28 bytes x parameters / copy bandwidth, with the bandwidth measured
in the same run. Reported: the median over interleaved repeats.

Run: python benchmarks/optimizer_step.py [--steps 200 --repeats 15]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import copy_bandwidth, interleaved_medians, sync  # noqa: E402

from trickbag.models import resnet_cifar  # noqa: E402
from trickbag.optim import FusedRAdam  # noqa: E402


def measure(device: torch.device, steps: int = 200, repeats: int = 15, warmup: int = 20, depth: int = 18) -> dict:
    """Median milliseconds per step of each optimizer (interleaved repeats) on the parameters of
    ``resnet_cifar(depth)``, the memory-bandwidth floor (CUDA), and each one's speed-up over
    torch's RAdam."""
    model = resnet_cifar(depth)
    shapes = [p.shape for p in model.parameters()]
    n = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(0)

    def params():
        ps = [torch.nn.Parameter(torch.randn(s, generator=gen).to(device)) for s in shapes]
        for p in ps:
            p.grad = torch.randn(p.shape, generator=gen).to(device) * 1e-3
        return ps

    opts = {
        "torch RAdam (foreach)": torch.optim.RAdam(params(), lr=1e-3, foreach=True),
        "trickbag FusedRAdam": FusedRAdam(params(), lr=1e-3),
    }
    if device.type == "cuda":
        opts["torch AdamW (fused)"] = torch.optim.AdamW(params(), lr=1e-3, fused=True)
    for opt in opts.values():  # warm-up: state allocation, kernel compilation, tables
        for _ in range(warmup):
            opt.step()
    sync(device)
    times = interleaved_medians({k: o.step for k, o in opts.items()}, device, steps, repeats)
    out = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "torch": torch.__version__, "params_m": n / 1e6, "steps": steps, "repeats": repeats,
           "ms_per_step": {k: 1e3 * t for k, t in times.items()}, "bandwidth_tb_s": None, "floor_ms": None}
    if device.type == "cuda":
        bandwidth = copy_bandwidth(device)
        out["bandwidth_tb_s"], out["floor_ms"] = bandwidth / 1e12, 1e3 * 28 * n / bandwidth
    base = times["torch RAdam (foreach)"]
    out["speedup_vs_torch_radam"] = {k: base / t for k, t in times.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    r = measure(torch.device(args.device), args.steps, args.repeats)
    floor = r["floor_ms"]
    if floor is not None:
        print(f"device: {r['device']}, torch {r['torch']}")
        print(f"copy bandwidth {r['bandwidth_tb_s']:.2f} TB/s; floor {floor:.3f} ms for {r['params_m']:.1f} M params")
    else:
        print(f"device: cpu, torch {r['torch']} ({r['params_m']:.1f} M params); the Triton kernel needs CUDA")
    print(f"{'optimizer':<24} {'ms/step':>8} {'x floor':>8} {'speed-up vs torch RAdam':>24}")
    for name, ms in r["ms_per_step"].items():
        ratio = f"{ms / floor:8.2f}" if floor else f"{'-':>8}"
        print(f"{name:<24} {ms:8.3f} {ratio} {r['speedup_vs_torch_radam'][name]:23.2f}x")


if __name__ == "__main__":
    main()
