"""Resumable data order: a seeded permutation per epoch and a position inside it.

Every rank draws the same permutation, cuts it into global micro-batches of
``batch_size * world_size`` samples and takes its own contiguous slice of each. The position
is counted in samples of the permutation, so a checkpointed position resumes the exact batch
sequence (also under a different world size, as long as the global batch divides the same).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, default_collate

_GOLDEN = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads (seed, epoch) over the seed space


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The sample order (n,) of one epoch, a pure function of (seed, epoch)."""
    g = torch.Generator().manual_seed((seed * _GOLDEN + epoch) % 2**63)
    return torch.randperm(n, generator=g)


@dataclass
class Position:
    """Where the stream is: ``offset`` samples of epoch ``epoch``'s permutation are used."""

    epoch: int = 0
    offset: int = 0


def dataset_length(dataset: Any) -> int:
    try:
        return len(dataset)
    except TypeError:
        raise TypeError(
            f"dataset must be a map-style dataset (__len__ and __getitem__) or a tensor, "
            f"got {type(dataset).__name__}"
        ) from None


class BatchStream:
    """Endless iterator of this rank's micro-batches; ``position`` always names the next one.

    Epochs drop their last incomplete global micro-batch so every step sees full batches
    (which DDP needs to average gradients over equal shares).
    """

    def __init__(
        self,
        dataset: Any,
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        position: Position | None = None,
    ) -> None:
        self.dataset = dataset
        self.n = dataset_length(dataset)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.global_batch = batch_size * world_size
        if self.n < self.global_batch:
            raise ValueError(
                f"dataset has {self.n} samples, fewer than one global batch of {self.global_batch} "
                f"(batch_size {batch_size} x {world_size} processes)"
            )
        self.seed = seed
        self.collate_fn = collate_fn
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.position = (
            Position() if position is None else Position(position.epoch, position.offset)
        )
        self._batches: Iterator[Any] | None = None

    def _rank_indices(self) -> list[list[int]]:
        """This rank's index lists for the rest of the current epoch."""
        perm = epoch_permutation(self.n, self.seed, self.position.epoch)
        lo = self.rank * self.batch_size
        last_start = self.n - self.global_batch  # no global batch may run past the epoch
        return [
            perm[s + lo : s + lo + self.batch_size].tolist()
            for s in range(self.position.offset, last_start + 1, self.global_batch)
        ]

    def _load(self, batches: list[list[int]]) -> Iterator[Any]:
        if isinstance(self.dataset, Tensor) and self.collate_fn is None:
            # Fast path, identical to collating rows one by one.
            return (self.dataset[torch.tensor(idx)] for idx in batches)
        return iter(
            DataLoader(
                self.dataset,
                batch_sampler=batches,
                collate_fn=self.collate_fn or default_collate,
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                # Without its own generator a DataLoader draws its worker seed from the global
                # RNG, at a moment that differs between a resumed and an uninterrupted run.
                generator=torch.Generator().manual_seed(
                    (self.seed * _GOLDEN + self.position.epoch * 7_919 + self.position.offset)
                    % 2**63
                ),
            )
        )

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> Any:
        for _ in range(2):  # at most one epoch change per batch
            if self._batches is None:
                self._batches = self._load(self._rank_indices())
            try:
                batch = next(self._batches)
            except StopIteration:
                self._batches = None
                self.position = Position(self.position.epoch + 1, 0)
                continue
            self.position = Position(self.position.epoch, self.position.offset + self.global_batch)
            return batch
        raise RuntimeError("an epoch produced no batch")  # unreachable: n >= global batch

    def close(self) -> None:
        # Drop the loader so worker processes exit.
        self._batches = None


def to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a (nested) batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # NamedTuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
