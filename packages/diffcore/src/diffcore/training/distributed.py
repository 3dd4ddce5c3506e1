"""The few torch.distributed pieces the loop needs (launch with ``torchrun``: it sets RANK,
LOCAL_RANK and WORLD_SIZE, which is all we read)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistInfo:
    """rank: this process among all; local_rank: among those on this machine (its GPU index);
    world_size: number of processes."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def dist_info() -> DistInfo:
    """Rank and world size: from the live process group if one exists, else from torchrun's
    environment variables, else a single process."""
    local_rank = _env_int("LOCAL_RANK", 0)
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), local_rank, dist.get_world_size())
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"inconsistent RANK={rank} / WORLD_SIZE={world} in the environment")
    return DistInfo(rank, local_rank, world)


def init_distributed(device: torch.device) -> bool:
    """Join the process group when launched with WORLD_SIZE > 1 (gloo on CPU, NCCL on CUDA).

    Returns True when this call created the group (and so should destroy it at the end).
    """
    info = dist_info()
    if not info.distributed or dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return True


def _collective_device() -> torch.device:
    # NCCL moves only CUDA tensors; gloo only CPU ones.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_tensor(t: Tensor) -> list[Tensor]:
    """Same-shaped tensor from every rank, on CPU, in rank order ([t] without a group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [t.cpu()]
    x = t.to(_collective_device())
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x)
    return [o.cpu() for o in out]


def mean_over_ranks(value: float) -> float:
    """Average a float over all ranks (the value itself without a group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    x = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(x)
    return float(x.item()) / dist.get_world_size()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
