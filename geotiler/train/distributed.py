"""DDP plumbing: detect a torchrun launch, pick the device, reduce tensors across ranks.

Under ``torchrun`` the environment carries ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; then the
process group is initialised (NCCL on CUDA, gloo on CPU). A single process is world size 1 and
every helper here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from geotiler.errors import GeotilerError, InputError, RankStoodDown

T = TypeVar("T")


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


def agree(runtime: Runtime, action: Callable[[], T]) -> T:
    """Run ``action`` on every rank and go on only if it succeeded on all of them.

    A :class:`~geotiler.errors.GeotilerError` (bad input, a taken run folder: checks that fail
    alike on every rank, or that only rank 0 makes) is raised by rank 0, whose message the user
    sees once; the other ranks raise :class:`~geotiler.errors.RankStoodDown` (the CLI exits 0,
    silent, so torchrun reports rank 0's failure alone) instead of waiting in the next
    collective until torchrun kills them. A rank that fails alone raises its own error.
    """
    error: GeotilerError | None = None
    try:
        value = action()
    except GeotilerError as exc:
        error = exc
    if not runtime.distributed:
        if error is not None:
            raise error
        return value
    main_ok = broadcast_flag(runtime, error is None)
    all_ok = bool(all_min(runtime, torch.tensor([int(error is None)])).item())
    if error is not None and (runtime.is_main or main_ok):
        raise error
    if not all_ok:
        raise RankStoodDown(f"rank {runtime.rank} stood down: another rank failed (it says why)")
    return value
