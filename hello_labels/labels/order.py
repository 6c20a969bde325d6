"""Batch order for a loader that replays an order stored with its label files (``shuffle=False``).

G-VBSM and EDC keep ``shuffle=False`` at training time: their label files remember which image went into which batch
at relabel time. Without those files the same loader walks the dataset in folder order, so every batch holds one
class. :func:`reshuffled` gives such a loader a fresh random order instead, seeded per epoch.
"""
from __future__ import annotations

from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader, Sampler, SequentialSampler

from hello_labels.seeds import derive_seed


class EpochShuffle(Sampler):
    """A random permutation of ``range(n)`` drawn from ``(seed, "order", epoch)``: the same epoch gives the same
    order, so a resumed run draws what an uninterrupted one would."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = int(n), seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "order", self.epoch))
        return iter(torch.randperm(self.n, generator=gen).tolist())


def replays_stored_order(loader) -> bool:
    """True for a ``DataLoader`` that walks its dataset in index order (``shuffle=False``, no custom sampler)."""
    return isinstance(loader, DataLoader) and isinstance(loader.sampler, SequentialSampler)


def reshuffled(loader: DataLoader, seed: int = 0) -> Optional[DataLoader]:
    """A copy of ``loader`` (same class, dataset, batch size, workers, collate, pinning) drawing its batches through
    :class:`EpochShuffle`; None when ``loader`` does not replay a stored order (it shuffles already)."""
    if not replays_stored_order(loader):
        return None
    extra = {}
    if loader.num_workers > 0:
        extra = {"prefetch_factor": loader.prefetch_factor, "persistent_workers": loader.persistent_workers}
    return type(loader)(loader.dataset, batch_size=loader.batch_size, sampler=EpochShuffle(len(loader.dataset), seed),
                        num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                        drop_last=loader.drop_last, timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
                        multiprocessing_context=loader.multiprocessing_context, generator=loader.generator, **extra)
