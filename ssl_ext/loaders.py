"""Resumable iteration over data loaders: a fixed number of labeled batches
per experience, and an endless unlabeled stream.

Both loaders record where they are (:meth:`~IterationLoader.position`: the
global torch RNG state when their current pass over the underlying loader
began and the batches drawn in that pass) and, given such a position, continue
exactly where an interrupted run stopped: the pass is re-opened with the same
RNG state (hence the same shuffling) and the batches already drawn are
skipped, then the global RNG state is put back.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
from avalanche.distributed import DistributedHelper
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ssl_ext.sample_ids import IndexedDataset


def fast_forward(loader, position: dict) -> tuple[Iterator, int]:
    """Re-open ``loader``'s pass with the global RNG state it began with and
    skip the batches already drawn; the global RNG state is left unchanged."""
    current = torch.get_rng_state()
    torch.set_rng_state(position["pass_rng"])
    try:
        iterator = iter(loader)
        for _ in range(position["in_pass"]):
            next(iterator)
    finally:
        torch.set_rng_state(current)
    return iterator, position["in_pass"]


def _set_sampler_epoch(loader, epoch: int) -> None:
    """A ``DistributedSampler`` shuffles by epoch: tell it which pass this is."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


class IterationLoader:
    """Iterate a loader cyclically for exactly ``n`` batches (has ``__len__``).

    It records where it is (:meth:`position`: batches done, the global RNG
    state when the current pass over ``loader`` began, batches drawn in that
    pass), and, given such a ``resume`` position and the global RNG state
    ``rng`` of the interrupted run, continues exactly where that run stopped.
    """

    def __init__(self, loader, n: int, resume: dict | None = None):
        self.loader = loader
        self.n = n
        self.done = 0
        self.pass_rng: Tensor | None = None
        self.in_pass = 0
        self._resume = resume

    def __len__(self) -> int:
        return self.n

    def position(self) -> dict:
        return {"done": self.done, "pass_rng": self.pass_rng, "in_pass": self.in_pass}

    def _open(self) -> Iterator:
        self.pass_rng = torch.get_rng_state()
        self.in_pass = 0
        return iter(self.loader)

    def __iter__(self) -> Iterator:
        resume, self._resume = self._resume, None
        self.done = 0
        iterator = None
        if resume is not None:
            self.done = int(resume["labeled"]["done"])
            if resume["labeled"]["pass_rng"] is not None:
                iterator, self.in_pass = fast_forward(self.loader, resume["labeled"])
                self.pass_rng = resume["labeled"]["pass_rng"]
            torch.set_rng_state(resume["rng"])
        while self.done < self.n:
            if iterator is None:
                iterator = self._open()
            batch = next(iterator, None)
            if batch is None:
                if self.in_pass == 0:
                    raise RuntimeError("the labeled data loader is empty")
                iterator = None
                continue
            self.in_pass += 1
            self.done += 1
            yield batch


class CyclingIterator:
    """Draw batches from ``loader`` forever, pass after pass (a
    ``DistributedSampler`` gets ``set_epoch`` per pass); records its
    :meth:`position` and resumes from one like :class:`IterationLoader`."""

    def __init__(self, loader, resume: dict | None = None):
        self.loader = loader
        self.epoch = -1
        self.pass_rng: Tensor | None = None
        self.in_pass = 0
        self._iterator: Iterator | None = None
        self._resume = resume

    def position(self) -> dict:
        return {"epoch": self.epoch, "pass_rng": self.pass_rng, "in_pass": self.in_pass}

    def _open(self) -> None:
        self.epoch += 1
        _set_sampler_epoch(self.loader, self.epoch)
        self.pass_rng = torch.get_rng_state()
        self.in_pass = 0
        self._iterator = iter(self.loader)

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        resume, self._resume = self._resume, None
        if resume is not None and resume["pass_rng"] is not None:
            self.epoch = int(resume["epoch"])
            _set_sampler_epoch(self.loader, self.epoch)
            self._iterator, self.in_pass = fast_forward(self.loader, resume)
            self.pass_rng = resume["pass_rng"]
        for _ in range(2):
            if self._iterator is None:
                self._open()
            batch = next(self._iterator, None)
            if batch is not None:
                self.in_pass += 1
                return batch
            self._iterator = None
        raise RuntimeError("the unlabeled data loader is empty")


def unlabeled_loader(
    dataset: Dataset, *, batch_size: int, num_workers: int, pin_memory: bool
) -> DataLoader:
    """Shuffled ``(image, index)`` batches of ``dataset``.

    Under ``torch.distributed`` (Avalanche's ``DistributedHelper``) each rank
    draws its own share, through a ``DistributedSampler`` whose seed rank 0
    draws and broadcasts. Batches are full (``drop_last``) unless the share is
    smaller than one batch (a ``RuntimeWarning`` says so).
    """
    indexed = IndexedDataset(dataset)
    sampler = None
    if DistributedHelper.world_size > 1:
        seed = DistributedHelper.broadcast(torch.randint(0, 2**31 - 1, (1,)))
        sampler = DistributedSampler(
            indexed,
            num_replicas=DistributedHelper.world_size,
            rank=DistributedHelper.rank,
            shuffle=True,
            seed=int(seed),
        )
    n_local = len(dataset) if sampler is None else len(sampler)
    if n_local < batch_size:
        warnings.warn(
            f"the unlabeled dataset has {n_local} samples (per rank), fewer than "
            f"one unlabeled batch of mu * train_mb_size = {batch_size}: every batch "
            "holds all of them; lower mu or train_mb_size, or add unlabeled data",
            RuntimeWarning,
            stacklevel=3,
        )
    return DataLoader(
        indexed,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=n_local >= batch_size,
        num_workers=num_workers,
        pin_memory=pin_memory,
    )


__all__ = ["CyclingIterator", "IterationLoader", "fast_forward", "unlabeled_loader"]
