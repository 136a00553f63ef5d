"""``train.precision=fp16`` on the fast base: autocast to float16 with torch's GradScaler, the
weights, the whitening, the EMA average and the optimizer state in float32.

Checked against the same run in fp32 (same seed: same initial weights, same batches): the
whitening filters are fitted in float32 whatever the precision, the scaler skips no step, the
BatchNorm-shift group keeps its 64x learning rate, the model ends on the EMA average, and the
weights and the test-time-augmented logits stay within float16 rounding of the fp32 run's. On the
CPU (float16 autocast runs there in recent torch), and on CUDA with the fused SGD kernel, which
unscales inside the kernel.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trickbag.data import Splits, synthetic
from trickbag.train.build import build_run
from trickbag.train.config import load_config

ROOT = Path(__file__).parents[2]


def _run(precision: str, device: str, steps: int = 8):
    data = synthetic(num_train=64, num_test=32, shape=(3, 16, 16), num_classes=10, seed=2)
    splits = Splits(data.train, None, data.test, name="synthetic")
    cfg = load_config(ROOT / "configs" / "cifar10_speedrun.yaml", [
        "data.batch_size=16", "data.eval_batch_size=32", "model.widths=[4,8,8]", "train.epochs=2",
        f"train.steps={steps}", f"train.precision={precision}", f"train.device={device}", "train.compile=false",
        f"train.channels_last={'true' if device == 'cuda' else 'false'}", "train.seed=5",
        "optimizer.lr=0.0234375"])  # the config's 1.5 at batch 1,024, scaled to batch 16
    ema = next(t.params for t in cfg.tricks if t.name == "ema")
    ema["start_epoch"] = 0  # 8 steps: average from the start (updates at steps 5 ...)
    next(t.params for t in cfg.tricks if t.name == "patch_whitening")["num_images"] = 64
    run = build_run(cfg, splits=splits)
    run.trainer.fit()
    return run


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-12)).item()


def _compare(device: str) -> None:
    ref, half, brain = _run("fp32", device), _run("fp16", device), _run("bf16", device)
    s = half.trainer.state
    assert s.scaler is not None and s.precision == "fp16"
    # runs under 2,000 steps never grow the scale, so each skipped (overflowing) step halves it once
    assert s.scaler.get_scale() == 2.0**16, "the scaler skipped a step"
    assert s.step == ref.trainer.state.step == 8
    lrs = sorted(g["lr"] for g in s.optimizer.param_groups)  # the BatchNorm shifts' group, at 64x
    assert len(lrs) == 2 and lrs[1] == pytest.approx(64 * lrs[0])
    ours, theirs = s.raw_model.state_dict(), ref.trainer.state.raw_model.state_dict()
    assert all(v.dtype == torch.float32 for v in ours.values() if v.is_floating_point())
    assert torch.equal(ours["whiten.weight"], theirs["whiten.weight"])  # fitted in float32, frozen
    ema = next(cb for cb in half.trainer.callbacks if type(cb).__name__ == "EMA")
    for a, b in zip((v for v in ours.values() if v.is_floating_point()), ema.shadow):
        assert torch.equal(a, b.to(a.device))  # the model ended on the average
    matrices = max(_relative(ours[k], v) for k, v in theirs.items() if v.dim() >= 2)
    assert matrices < 2e-3, f"fp16 weights differ from fp32 by {matrices:.2e} (relative)"
    # The shifts (BatchNorm, whitening) move little, by sums of nearly cancelling gradients, so
    # rounding shows more there: measured against bf16's, the issue's reason to offer fp16.
    errors = {p: sum(_relative(run.trainer.state.raw_model.state_dict()[k], v) for k, v in theirs.items()
                     if v.is_floating_point() and v.norm() > 0) for p, run in (("fp16", half), ("bf16", brain))}
    assert errors["fp16"] < 0.5 * errors["bf16"], errors
    got, expected = half.trainer.predict(half.test_data), ref.trainer.predict(ref.test_data)
    assert got.dtype == torch.float32  # TTA logits averaged, then returned in float32
    assert _relative(got, expected) < 1e-2
    assert _relative(got, expected) < 0.5 * _relative(brain.trainer.predict(brain.test_data), expected)
    assert (got.argmax(1) == expected.argmax(1)).float().mean() >= 0.9


def test_fp16_speedrun_on_cpu_matches_fp32():
    _compare("cpu")


@pytest.mark.cuda
def test_fp16_speedrun_on_cuda_matches_fp32():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # a float32 reference
    try:
        _compare("cuda")
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    run = _run("fp16", "cuda")
    assert run.trainer.state.optimizer.defaults.get("fused") is True  # GradScaler with the fused kernel
