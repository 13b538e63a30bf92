"""Where a stage runs: CPU threads, and the ranks of a ``torchrun`` launch.

One copy for every stage (extraction splits shards by rank; the trainers set threads).
"""

from __future__ import annotations

import os


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads (None: torch's default). The same value gives the same bytes."""
    if threads is not None:
        import torch

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
    import torch

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
    import torch

    if world_size() > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
