"""Running a command on several processes through ``torchrun`` (one node or many).

The process group is set up from the environment variables torchrun sets (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): NCCL when the processes use CUDA
GPUs, gloo on CPUs. Without them (a plain ``dtf ...``) everything here is a no-op for a
single process.

Work is split by striding, without padding: process r of W takes items r, r + W,
r + 2W, ... so every item is done exactly once (torch's DistributedSampler pads the last
round with repeats, which would count some videos twice in a metric).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroup:
    """Where this process stands: ``rank`` of ``world_size``; ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    created_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Destroy the process group if :func:`setup` created it."""
        if self.created_here and dist.is_initialized():
            dist.destroy_process_group()


def launched_world_size() -> int:
    """The number of processes torchrun started (1 without torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def env_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun): known before any setup."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def setup(device_type: str) -> ProcessGroup:
    """Join (or create from the environment) the default process group.

    ``device_type``: "cuda" picks NCCL and binds this process to GPU LOCAL_RANK; anything
    else picks gloo. An existing process group (a caller that set one up) is used as is.
    """
    if dist.is_available() and dist.is_initialized():
        return ProcessGroup(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                            dist.get_backend())
    if launched_world_size() <= 1:
        return ProcessGroup()
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; run without torchrun")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), local_rank, backend, created_here=True)


def shard(items: Sequence[int], group: ProcessGroup) -> list[int]:
    """This process's share of ``items``: every ``world_size``-th one from ``rank`` on."""
    return list(items[group.rank::group.world_size])


def rounds(count: int, group: ProcessGroup) -> int:
    """How many steps the busiest process takes for ``count`` items (all processes run that
    many steps, so that they meet at the same collective calls)."""
    return -(-count // group.world_size)


def all_gather(obj: Any, group: ProcessGroup) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process (pickled between our own
    processes only)."""
    if not group.distributed:
        return [obj]
    out: list[Any] = [None] * group.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any, group: ProcessGroup) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not group.distributed:
        return obj
    holder = [obj if group.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
