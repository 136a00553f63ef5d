"""Data parallelism through torch.distributed (launched by torchrun)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["world", "init_distributed", "all_reduce_sum", "barrier", "broadcast_buffers", "shutdown"]


def world() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment (0, 0, 1 without it)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group when launched with several processes; returns (rank, world size).
    NCCL on CUDA, gloo on CPU."""
    rank, _, size = world()
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return rank, size


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank. DDP broadcasts them at the
    start of each forward, so after the last step every rank holds its own local update."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for buf in module.buffers():
            dist.broadcast(buf, src=0)


def shutdown() -> None:
    """Leave the process group: wait for every rank, then destroy it. Call it once at the end of a
    script that trained under torchrun, after the last collective (an evaluation is one).

    Without it the interpreter tears the group down on exit, and gloo's worker threads can then
    abort the process ("terminate called without an active exception") after a successful run.
    Call it only when every rank got here: after an exception, let torchrun stop the others.
    """
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()
