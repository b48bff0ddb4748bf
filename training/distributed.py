"""DDP for the training loop: ranks from torchrun's environment, the process group, reductions.

With ``WORLD_SIZE`` unset (or 1) every function here is a no-op or the
identity, so the loop calls them unconditionally. ``torch.distributed`` is
imported only when a process group is in use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run, as torchrun sets it (``RANK``, ``WORLD_SIZE``...)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0  # the GPU index on this node

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints and plots."""
        return self.rank == 0


def ranks_from_env() -> Ranks:
    return Ranks(
        rank=int(os.environ.get("RANK", "0")),
        world=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def default_device(ranks: Ranks) -> str:
    """``cuda:LOCAL_RANK`` when there is a GPU, else the CPU."""
    return f"cuda:{ranks.local_rank}" if torch.cuda.is_available() else "cpu"


def join_process_group(ranks: Ranks, device: torch.device) -> None:
    """Join the run's process group (NCCL on GPU, gloo on CPU) when there is more than one rank."""
    if not ranks.distributed:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)


def leave_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def wrap_for_ddp(net: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """``net`` in ``DistributedDataParallel`` (gradients averaged across ranks), or ``net``."""
    if not ranks.distributed:
        return net
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None
    )


def gather_from_ranks(value: Any, ranks: Ranks) -> list[Any]:
    """Every rank's ``value``, in rank order (collective: all ranks must call it)."""
    if not ranks.distributed:
        return [value]
    import torch.distributed as dist

    gathered: list[Any] = [None] * ranks.world
    dist.all_gather_object(gathered, value)
    return gathered


def mean_over_ranks(value: float, ranks: Ranks) -> float:
    """The mean of ``value`` over all ranks (collective: all ranks must call it)."""
    if not ranks.distributed:
        return value
    import torch.distributed as dist

    reduced = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(reduced)
    return float(reduced) / ranks.world
