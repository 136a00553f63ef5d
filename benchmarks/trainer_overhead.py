"""The Trainer against an equivalent hand-written loop, timed side by side in one run.

CPU (default): a small MLP on synthetic data; the two loops run interleaved, several times
each, and the per-step overhead is the ratio of the medians.

GPU (--gpu): ResNet-18 on the CIFAR-10 pack for 12 epochs, batch 512, bf16 autocast,
channels-last, SGD with Nesterov momentum (torch's fused kernel in both) and a one-cycle
schedule, random flip and 4-pixel reflect-padded crop on the device. One cold run first
(cuDNN autotuning), then warm runs alternating hand-written / Trainer; wall time and test
accuracy of each. Both loops draw batches from the same DeviceLoader, so the difference is
the training loop alone.

Run: python benchmarks/trainer_overhead.py [--gpu --data PATH --repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _timing import sync  # noqa: E402

from trickbag.augment import Compose, HFlip, RandomCrop, fit_normalizer  # noqa: E402
from trickbag.data import DeviceLoader, image_folder, synthetic  # noqa: E402
from trickbag.models import resnet_cifar  # noqa: E402
from trickbag.schedules import one_cycle, to_lr_scheduler  # noqa: E402
from trickbag.train import Trainer  # noqa: E402


# ---- CPU: a small MLP ----------------------------------------------------------------------------

def _mlp():
    return torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                               torch.nn.ReLU(), torch.nn.Linear(256, 10))


def cpu_hand(splits, epochs: int) -> float:
    torch.manual_seed(0)
    model = _mlp()
    loader = DeviceLoader(splits.train, 64, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = to_lr_scheduler(opt, one_cycle(epochs * len(loader)))
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        total = torch.zeros(())
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            total += loss.detach()
        total.item()
    return (time.perf_counter() - start) / (epochs * len(loader))


def cpu_trainer(splits, epochs: int) -> float:
    torch.manual_seed(0)
    model = _mlp()
    loader = DeviceLoader(splits.train, 64, seed=0)
    trainer = Trainer(model, loader, optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9),
                      schedule=one_cycle(epochs * len(loader)), epochs=epochs, device="cpu", progress=False)
    start = time.perf_counter()
    trainer.fit()
    return (time.perf_counter() - start) / (epochs * len(loader))


def run_cpu(repeats: int) -> None:
    torch.set_num_threads(1)
    splits = synthetic(num_train=8192, num_test=256, shape=(64,), num_classes=10)
    cpu_hand(splits, 1), cpu_trainer(splits, 1)  # warm-up
    hand, ours = [], []
    for _ in range(repeats):
        hand.append(cpu_hand(splits, 3))
        ours.append(cpu_trainer(splits, 3))
    h, t = statistics.median(hand), statistics.median(ours)
    print(f"CPU, MLP 64-256-256-10, batch 64, 1 thread, {repeats} interleaved repeats of 3 epochs (384 steps)")
    print(f"  hand-written loop  {h * 1e6:8.1f} us/step (median)")
    print(f"  trickbag Trainer   {t * 1e6:8.1f} us/step (median)")
    print(f"  overhead           {100 * (t / h - 1):+8.2f} %   (goal: <= 3 %)")


# ---- GPU: ResNet-18 on CIFAR-10 ------------------------------------------------------------------

EPOCHS, BATCH, LR = 12, 512, 0.2


def _gpu_loaders(splits, device, seed):
    norm = fit_normalizer(splits.train.inputs)
    augment = Compose([HFlip(), RandomCrop(padding=4)])
    train = DeviceLoader(splits.train, BATCH, device=device, normalize=norm, augment=augment, seed=seed,
                         channels_last=True)
    test = DeviceLoader(splits.test, 1000, device=device, normalize=norm, shuffle=False, channels_last=True)
    return train, test


def _model(device):
    torch.manual_seed(0)
    return resnet_cifar(18).to(device).to(memory_format=torch.channels_last)


def _sgd(model):
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=5e-4, fused=True)


@torch.no_grad()
def _accuracy(model, test) -> float:
    model.eval()
    correct = n = 0
    for x, y in test:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            correct += (model(x).argmax(1) == y).sum()
        n += len(y)
    return correct.item() / n


def gpu_hand(splits, device) -> tuple[float, float]:
    train, test = _gpu_loaders(splits, device, seed=0)
    model = _model(device)
    opt = _sgd(model)
    sched = to_lr_scheduler(opt, one_cycle(EPOCHS * len(train)))
    torch.manual_seed(0)
    sync(device)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        model.train()
        for x, y in train:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
    sync(device)
    return time.perf_counter() - start, _accuracy(model, test)


def gpu_trainer(splits, device) -> tuple[float, float]:
    train, test = _gpu_loaders(splits, device, seed=0)
    model = _model(device)
    trainer = Trainer(model, train, optimizer=_sgd, schedule=one_cycle(EPOCHS * len(train)), epochs=EPOCHS,
                      device=device, precision="bf16", channels_last=True, progress=False)
    sync(device)
    start = time.perf_counter()
    trainer.fit()
    sync(device)
    return time.perf_counter() - start, _accuracy(model, test)


def run_gpu(data: str, repeats: int) -> None:
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    splits = image_folder(data)
    print(f"data: {len(splits.train)} train / {len(splits.test)} test images, loaded in {time.perf_counter() - t0:.1f}s")
    cold = gpu_hand(splits, device)
    print(f"cold hand-written run (cuDNN autotuning included): {cold[0]:.2f}s, test acc {cold[1]:.4f}")
    rows = {"hand-written": [], "trainer": []}
    for _ in range(repeats):
        rows["hand-written"].append(gpu_hand(splits, device))
        rows["trainer"].append(gpu_trainer(splits, device))
    print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    print(f"ResNet-18, CIFAR-10 pack, {EPOCHS} epochs, batch {BATCH}, bf16, channels_last, warm runs:")
    for name, runs in rows.items():
        times = ", ".join(f"{t:.2f}s" for t, _ in runs)
        accs = ", ".join(f"{a:.4f}" for _, a in runs)
        print(f"  {name:<13} time {times}   test acc {accs}")
    h = statistics.median(t for t, _ in rows["hand-written"])
    t = statistics.median(t for t, _ in rows["trainer"])
    ha = statistics.median(a for _, a in rows["hand-written"])
    ta = statistics.median(a for _, a in rows["trainer"])
    print(f"  ratio trainer / hand-written: {t / h:.3f}x (goal <= 1.02x); accuracy difference {100 * (ta - ha):+.2f} points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="the ResNet-18 / CIFAR-10 comparison on CUDA")
    parser.add_argument("--data", default=str(Path(__file__).parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    if args.gpu:
        run_gpu(args.data, args.repeats or 2)
    else:
        run_cpu(args.repeats or 7)


if __name__ == "__main__":
    main()
