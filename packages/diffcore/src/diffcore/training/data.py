"""Resumable data order: a seeded permutation per epoch and a position inside it.

Every rank draws the same permutation, cuts it into global micro-batches of
``batch_size * world_size`` samples and takes its own contiguous slice of each; ``grad_accum``
consecutive global micro-batches make one optimizer step's global batch. The order depends on
the global batch alone, not on how it is split: 2 processes x 1 micro-batch read the same
samples per step as 1 process x 2 micro-batches. The position is counted in samples of the
permutation, so a checkpointed position resumes the exact batch sequence (also under another
split of the same global batch).

With ``length_window`` > 0 each window of that many global batches of the permutation is
sorted by sample length before it is cut, and the window's batches are then shuffled: batches
of similar lengths waste little on padding (fairseq's and Hugging Face's "group by length"),
and the order is still a pure function of (seed, epoch), so resuming stays exact.
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


def group_by_length(
    order: Tensor, lengths: Tensor, global_batch: int, window: int, generator: torch.Generator
) -> Tensor:
    """``order`` (n,) rearranged so each run of ``global_batch`` consecutive samples holds
    similar ``lengths``: every ``window * global_batch`` samples are sorted by length (stable),
    cut into global batches, and those batches shuffled. An incomplete last batch stays last
    (the stream drops it)."""
    span = window * global_batch
    pieces = []
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[torch.sort(lengths[chunk], stable=True).indices]
        full = len(chunk) // global_batch * global_batch
        batches = chunk[:full].view(-1, global_batch)
        pieces.append(batches[torch.randperm(len(batches), generator=generator)].reshape(-1))
        pieces.append(chunk[full:])
    return torch.cat(pieces) if pieces else order


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

    Epochs drop their last incomplete global batch (``batch_size * world_size * grad_accum``)
    so every optimizer step sees full micro-batches from one epoch (DDP averages gradients
    over equal shares). ``length_window`` > 0 groups global batches by ``dataset.lengths``
    (see :func:`group_by_length`).
    """

    def __init__(
        self,
        dataset: Any,
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        position: Position | None = None,
        length_window: int = 0,
    ) -> None:
        self.dataset = dataset
        self.n = dataset_length(dataset)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.global_batch = batch_size * world_size  # one micro-batch of every rank
        self.step_batch = self.global_batch * grad_accum  # one optimizer step of every rank
        if grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1, got {grad_accum}")
        if self.n < self.step_batch:
            raise ValueError(
                f"dataset has {self.n} samples, fewer than one global batch of {self.step_batch} "
                f"(batch_size {batch_size} x {world_size} processes x grad_accum {grad_accum})"
            )
        self.seed = seed
        self.collate_fn = collate_fn
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.position = (
            Position() if position is None else Position(position.epoch, position.offset)
        )
        self._batches: Iterator[Any] | None = None
        if length_window < 0:
            raise ValueError(f"length_window must be >= 0, got {length_window}")
        self.length_window = length_window
        self.lengths = None
        if length_window:
            lengths = getattr(dataset, "lengths", None)
            if lengths is None:
                raise ValueError(
                    "grouping batches by length needs the length of every sample: give the "
                    f"dataset ({type(dataset).__name__}) a `lengths` attribute"
                )
            self.lengths = torch.as_tensor(lengths, dtype=torch.long)
            if self.lengths.shape != (self.n,):
                raise ValueError(
                    f"lengths has shape {tuple(self.lengths.shape)}, expected ({self.n},)"
                )

    def _epoch_order(self) -> Tensor:
        perm = epoch_permutation(self.n, self.seed, self.position.epoch)
        if not self.length_window:
            return perm
        g = torch.Generator().manual_seed((self.seed * _GOLDEN + self.position.epoch + 1) % 2**63)
        return group_by_length(perm, self.lengths, self.step_batch, self.length_window, g)

    def _rank_indices(self) -> list[list[int]]:
        """This rank's index lists for the rest of the current epoch."""
        perm = self._epoch_order()
        lo = self.rank * self.batch_size
        end = self.n // self.step_batch * self.step_batch  # no optimizer step spans two epochs
        return [
            perm[s + lo : s + lo + self.batch_size].tolist()
            for s in range(self.position.offset, end, self.global_batch)
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
