"""Loop helpers: the finiteness check that the NaN guard relies on."""

from __future__ import annotations

import pytest
import torch

from trickbag.loop import all_finite


def _param(grad: torch.Tensor) -> torch.nn.Parameter:
    p = torch.nn.Parameter(torch.zeros_like(grad))
    p.grad = grad
    return p


@pytest.mark.parametrize(
    "grad",
    [
        torch.full((4900,), 1000.0, dtype=torch.float16),  # its L2 norm (7e4) overflows fp16
        torch.full((2,), 1e20),  # its squares overflow fp32
        torch.full((3,), torch.finfo(torch.float32).max),
        torch.full((5,), 3e38, dtype=torch.float64) * 1e200,
        torch.full((7,), 2.0**127, dtype=torch.bfloat16),
    ],
)
def test_large_finite_gradients_are_finite(grad):
    assert bool(all_finite(torch.tensor(1.0), [_param(grad)]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_any_nonfinite_element_is_caught(bad, dtype):
    good = _param(torch.ones(10, dtype=dtype))
    grad = torch.randn(64, dtype=torch.float64).to(dtype)
    grad[37] = bad
    assert not bool(all_finite(torch.tensor(0.5), [good, _param(grad)]))
    assert not bool(all_finite(torch.tensor(bad), [good]))  # the loss too


@pytest.mark.cuda
def test_cuda_max_norm_propagates_nan():
    grad = torch.zeros(1 << 20, device="cuda")
    grad[123457] = float("nan")
    assert not bool(all_finite(torch.tensor(1.0, device="cuda"), [_param(grad)]))
    big = torch.full((1 << 20,), 1e20, device="cuda")
    assert bool(all_finite(torch.tensor(1.0, device="cuda"), [_param(big)]))
