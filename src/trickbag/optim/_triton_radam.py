"""The Triton kernel behind FusedRAdam: one pass over every tensor of a parameter group.

Imported only on CUDA when Triton is installed. A launch covers many tensors: device tables
hold each tensor's parameter, gradient and moment addresses and its size, and a block table
maps every program to (tensor, offset), so one launch updates all of a group's tensors
("multi-tensor apply") reading p, g, m, v once and writing p, m, v once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 2048


@triton.jit
def _radam_kernel(
    p_table,
    g_table,
    m_table,
    v_table,
    sizes,
    block_tensor,
    block_start,
    beta1,
    beta2,
    eps,
    decay,  # multiplier of p for decoupled decay, or the L2 coefficient added to g
    step_size,  # lr * rect * sqrt(bc2) / bc1 when rectified, lr / bc1 otherwise
    DTYPE: tl.constexpr,
    RECTIFIED: tl.constexpr,
    DECOUPLED: tl.constexpr,
    HAS_DECAY: tl.constexpr,
    MAXIMIZE: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    pid = tl.program_id(0)
    t = tl.load(block_tensor + pid)
    start = tl.multiple_of(tl.load(block_start + pid), BLOCK_SIZE)
    n = tl.load(sizes + t)
    # Every address is 16-byte aligned (checked on the host), which lets Triton use
    # 16-byte vector loads and stores.
    p_ptr = tl.multiple_of(tl.load(p_table + t), 16).to(tl.pointer_type(DTYPE))
    g_ptr = tl.multiple_of(tl.load(g_table + t), 16).to(tl.pointer_type(DTYPE))
    m_ptr = tl.multiple_of(tl.load(m_table + t), 16).to(tl.pointer_type(DTYPE))
    v_ptr = tl.multiple_of(tl.load(v_table + t), 16).to(tl.pointer_type(DTYPE))

    offs = start + tl.arange(0, BLOCK_SIZE)
    mask = offs < n
    p = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    m = tl.load(m_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if MAXIMIZE:
        g = -g
    if HAS_DECAY:
        if DECOUPLED:
            p = p * decay
        else:
            g = g + decay * p
    m = m + (1.0 - beta1) * (g - m)
    v = beta2 * v + (1.0 - beta2) * g * g
    if RECTIFIED:
        p = p - step_size * m / (tl.sqrt(v) + eps)
    else:
        p = p - step_size * m
    tl.store(p_ptr + offs, p.to(DTYPE), mask=mask)
    tl.store(m_ptr + offs, m.to(DTYPE), mask=mask)
    tl.store(v_ptr + offs, v.to(DTYPE), mask=mask)


_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


class BlockTables:
    """Device tables for one set of same-dtype tensors; rebuilt only when addresses change."""

    def __init__(self, params: list[torch.Tensor], exp_avgs, exp_avg_sqs):
        device = params[0].device
        sizes = [p.numel() for p in params]
        tensors, starts = [], []
        for i, n in enumerate(sizes):
            for s in range(0, n, BLOCK):
                tensors.append(i)
                starts.append(s)
        self.num_blocks = len(tensors)
        self.block_tensor = torch.tensor(tensors, dtype=torch.int32, device=device)
        self.block_start = torch.tensor(starts, dtype=torch.int64, device=device)
        self.sizes = torch.tensor(sizes, dtype=torch.int64, device=device)
        self.p_table = _addresses(params)
        self.m_table = _addresses(exp_avgs)
        self.v_table = _addresses(exp_avg_sqs)
        self.grad_key: tuple[int, ...] = ()
        self.g_table: torch.Tensor | None = None
        self.dtype = _TL_DTYPES[params[0].dtype]

    def grads(self, grads: list[torch.Tensor]) -> torch.Tensor | None:
        """The gradient address table, or None when a gradient is not 16-byte aligned."""
        key = tuple(g.data_ptr() for g in grads)
        if key != self.grad_key:
            if any(ptr % 16 for ptr in key):
                return None
            self.grad_key = key
            self.g_table = _addresses(grads)
        return self.g_table


def _addresses(tensors: list[torch.Tensor]) -> torch.Tensor:
    ptrs = torch.tensor([t.data_ptr() for t in tensors], dtype=torch.int64)
    return ptrs.to(tensors[0].device, non_blocking=True)


def launch(tables: BlockTables, grads, *, beta1, beta2, eps, decay, step_size, rectified, decoupled, has_decay,
           maximize) -> bool:
    """Run the kernel; False (nothing done) when the gradients cannot go through it."""
    g_table = tables.grads(grads)
    if g_table is None:
        return False
    _radam_kernel[(tables.num_blocks,)](
        tables.p_table,
        g_table,
        tables.m_table,
        tables.v_table,
        tables.sizes,
        tables.block_tensor,
        tables.block_start,
        beta1,
        beta2,
        eps,
        decay,
        step_size,
        DTYPE=tables.dtype,
        RECTIFIED=rectified,
        DECOUPLED=decoupled,
        HAS_DECAY=has_decay,
        MAXIMIZE=maximize,
        BLOCK_SIZE=BLOCK,
        num_warps=8,
    )
    return True
