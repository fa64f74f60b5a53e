"""DDP plumbing: detect a torchrun launch, pick the device, reduce tensors across ranks.

Under ``torchrun`` the environment carries ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; then the
process group is initialised (NCCL on CUDA, gloo on CPU). A single process is world size 1 and
every helper here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from geotiler.errors import InputError


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: its device, rank and the world size."""

    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a torchrun launch (only rank 0 writes or prints)."""
    return int(os.environ.get("RANK", "0")) == 0


def start(device: str) -> Runtime:
    """Choose the device (``auto``: CUDA when present) and join the process group if any."""
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise InputError("--device cuda: no CUDA device is available; use --device auto or cpu")
    use_cuda = cuda and device != "cpu"
    if not launched_by_torchrun():
        return Runtime(torch.device("cuda" if use_cuda else "cpu"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    target = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    return Runtime(target, rank=dist.get_rank(), world=dist.get_world_size())


def stop(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(runtime: Runtime, tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks (in place; returned for convenience)."""
    if runtime.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_min(runtime: Runtime, tensor: torch.Tensor) -> torch.Tensor:
    if runtime.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


def broadcast_flag(runtime: Runtime, flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (so all ranks stop together)."""
    if not runtime.distributed:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int64)
    dist.broadcast(value, src=0)
    return bool(value.item())
