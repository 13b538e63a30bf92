"""Where a stage runs: CPU threads, and the ranks of a ``torchrun`` launch.

One copy for every stage (extraction splits shards by rank; the trainers set threads;
data-parallel online training sums and gathers over the ranks).
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torch import Tensor


class Parallel(StrEnum):
    """How the ranks of a ``torchrun`` launch share online SAE training."""

    DATA = "data"
    """Each rank reads its own share of the tracks and the SAEs' gradients are summed over
    the ranks: one forward per frame, N x ``batch_size`` frames per step."""
    LAYERS = "layers"
    """Every rank runs every forward and trains its own layers' SAEs (rank r: layers r,
    r+N, ...): each SAE is exactly the one-process SAE, the forward is not split."""


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads (None: torch's default). The same value gives the same bytes."""
    if threads is not None:
        torch.set_num_threads(threads)


def rank() -> int:
    """This process's rank under ``torchrun`` (0 when run alone)."""
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(device: str) -> str:
    """Join the ``torchrun`` process group if there is one; return this rank's device.

    NCCL between GPUs, gloo on CPUs; under torchrun ``cuda`` means this rank's own GPU.
    """

    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
        # Before the process group: NCCL's object collectives (the features stage gathers
        # per-rank tallies) run on the current device.
        torch.cuda.set_device(device)
    if world_size() > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


def barrier() -> None:
    """Wait for every rank (a no-op when run alone)."""

    if world_size() > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()


def sum_over_ranks(values: Tensor) -> Tensor:
    """``values`` summed over every rank, in place (returned, to use in an expression)."""

    torch.distributed.all_reduce(values)
    return values


def every_rank(has: bool, device: str) -> bool:
    """Whether ``has`` holds on every rank (each rank must ask as often as the others)."""

    flag = torch.tensor([int(has)], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item())


def gather_rows(rows: Tensor) -> Tensor:
    """Every rank's ``rows`` (``[n_r, ...]``, n_r may differ) concatenated in rank order."""

    counts = [torch.zeros(1, dtype=torch.long, device=rows.device) for _ in range(world_size())]
    torch.distributed.all_gather(counts, torch.tensor([rows.shape[0]], device=rows.device))
    sizes = [int(c.item()) for c in counts]
    padded = rows.new_zeros(max(sizes), *rows.shape[1:])  # all_gather needs equal shapes
    padded[: rows.shape[0]] = rows
    parts = [torch.empty_like(padded) for _ in sizes]
    torch.distributed.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable, CPU tensors only), in rank order."""

    parts: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(parts, obj)
    return parts
