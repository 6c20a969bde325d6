"""Running under ``torchrun``: which process this is, and rank 0 deciding for all.

``distill``, ``export-fkd`` and ``refine`` join the process group ``torchrun`` describes in the environment (gloo
on CPU, nccl on GPU); one process without ``torchrun`` is a world of one and needs no process group. A group they
create lives until the process exits and is destroyed then.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, TypeVar

import torch
import torch.distributed as dist

from . import errors
from .errors import HelloLabelsError

T = TypeVar("T")


@dataclass
class DistEnv:
    """This process's place in the run: its rank, the world size and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device=None) -> "DistEnv":
        """Join the process group ``torchrun`` describes in the environment (gloo on CPU, nccl on GPU)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None:
            device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
        device = torch.device(device)
        if world > 1 and not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            atexit.register(_leave)
        return cls(int(os.environ.get("RANK", "0")), world, device)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def share(self, items: Sequence[T]) -> List[T]:
        """This rank's share of ``items``: every ``world_size``-th, from position ``rank``."""
        return list(items[self.rank::self.world_size])


def _leave() -> None:
    """Destroy the process group while the interpreter is whole: left to its teardown, gloo's worker threads now
    and then abort a finished process ("terminate called without an active exception", SIGABRT)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _shared(error: Optional[HelloLabelsError]) -> Optional[tuple]:
    return None if error is None else (type(error).__name__, str(error))


def _raise(own: Optional[HelloLabelsError], shared: Optional[tuple]) -> None:
    """Raise this rank's own error, else the one another rank shared, as the same subclass (FolderBusyError stays
    FolderBusyError on every rank, so callers can tell a busy folder from bad input)."""
    if own is not None:
        raise own
    if shared is not None:
        name, message = shared
        cls = getattr(errors, name, None)
        raise (cls if isinstance(cls, type) and issubclass(cls, HelloLabelsError) else HelloLabelsError)(message)


def on_main(env: DistEnv, fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0, its result (or its one-line error, same class) shared with every rank, so that no rank
    waits forever for a rank that stopped."""
    result, error = None, None
    if env.main:
        try:
            result = fn()
        except HelloLabelsError as err:
            error = err
    shared = _shared(error)
    if env.world_size > 1:
        box = [result, shared]
        dist.broadcast_object_list(box, src=0)
        result, shared = box
    _raise(error, shared)
    return result


def all_ok(env: DistEnv, fn: Callable[[], T]) -> T:
    """``fn()`` on every rank; if any rank fails with a :class:`HelloLabelsError`, every rank raises it (its own,
    else the lowest failing rank's, same class), so none waits forever at the next barrier."""
    result, error = None, None
    try:
        result = fn()
    except HelloLabelsError as err:
        error = err
    shared = next((e for e in gather(env, _shared(error)) if e is not None), None)
    _raise(error, shared)
    return result


def gather(env: DistEnv, obj: T) -> List[T]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a world of one)."""
    if env.world_size == 1:
        return [obj]
    out = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out
