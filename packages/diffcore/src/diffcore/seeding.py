"""Where samplers get their randomness: one ``torch.Generator`` for a whole batch, or one per
sample (:class:`SampleGenerators`), so that a sample does not depend on the batch it was drawn in.

Every sampler draws through :func:`randn` / :func:`rand` (and :func:`rand_rows` for draws over a
subset of positions), which accept either kind. With one generator per sample, row ``b`` of every
draw comes from generator ``b`` alone: the same seed gives the same sample whether it is drawn
alone, in a batch of 8 or of 256.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "Generator",
    "SampleGenerators",
    "rand",
    "rand_rows",
    "randn",
    "sample_seeds",
    "seeded",
]

_MASK64 = (1 << 64) - 1


def _mix(z: int) -> int:
    """SplitMix64's finalizer: nearby integers map to unrelated 64-bit ones."""
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & _MASK64
    return z ^ (z >> 31)


def sample_seeds(seed: int, count: int, *, start: int = 0) -> list[int]:
    """Seeds of samples ``start .. start + count - 1`` of a run seeded ``seed``: sample i's seed
    depends only on (seed, i), so the first samples of a run of 8 are those of a run of 100."""
    if count < 0 or start < 0:
        raise ValueError(f"count and start must be >= 0, got {count} and {start}")
    base = _mix(int(seed) & _MASK64)
    return [
        _mix((base + 0x9E3779B97F4A7C15 * (start + i + 1)) & _MASK64) >> 1 for i in range(count)
    ]


class SampleGenerators:
    """One ``torch.Generator`` per sample (row) of a batch, seeded from ``seeds``.

    Pass it as a sampler's ``generator``: each row then draws its noise from its own generator.
    Slicing (``gens[2:5]``) gives the generators of those rows, sharing their state.
    """

    def __init__(
        self,
        seeds: Sequence[int] | None = None,
        *,
        device: str | torch.device = "cpu",
        generators: Sequence[torch.Generator] | None = None,
    ) -> None:
        if (seeds is None) == (generators is None):
            raise ValueError("give seeds or generators, not both")
        if generators is None:
            generators = [torch.Generator(device).manual_seed(int(s)) for s in seeds]
        if not generators:
            raise ValueError("SampleGenerators needs at least one sample")
        self.generators = list(generators)
        self.device = self.generators[0].device

    def __len__(self) -> int:
        return len(self.generators)

    def __getitem__(self, rows: slice) -> SampleGenerators:
        if not isinstance(rows, slice):
            raise TypeError(f"index SampleGenerators with a slice, got {type(rows).__name__}")
        return SampleGenerators(generators=self.generators[rows])

    def check_batch(self, batch: int) -> None:
        if batch != len(self):
            raise ValueError(
                f"{len(self)} per-sample generators for a batch of {batch}: give one per row"
            )


Generator = torch.Generator | SampleGenerators | None
"""What a sampler's ``generator`` may be."""


def _device(generator: SampleGenerators, device: torch.device | str | None) -> torch.device:
    # a CPU generator draws on the CPU; the rows are then moved (same numbers on any device)
    return torch.device(device) if device is not None else generator.device


def _draw(
    draw, shape: Sequence[int], generator: Generator, device: Any, dtype: torch.dtype | None
) -> Tensor:
    """``draw`` (torch.randn or torch.rand) of ``shape``; row b by generator b when the
    generators are per sample."""
    if not isinstance(generator, SampleGenerators):
        return draw(shape, generator=generator, device=device, dtype=dtype)
    generator.check_batch(shape[0])
    rows = [
        draw(tuple(shape[1:]), generator=g, device=g.device, dtype=dtype)
        for g in generator.generators
    ]
    return torch.stack(rows).to(_device(generator, device))


def randn(
    shape: Sequence[int],
    generator: Generator,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Standard normal draws of ``shape`` (B, ...); with per-sample generators row b is drawn by
    generator b."""
    return _draw(torch.randn, shape, generator, device, dtype)


def rand(
    shape: Sequence[int],
    generator: Generator,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Uniform [0, 1) draws of ``shape`` (B, ...); per-sample generators draw row by row."""
    return _draw(torch.rand, shape, generator, device, dtype)


def rand_rows(
    selected: Tensor,
    width: int,
    generator: Generator,
    *,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Uniform draws (N, width) for the N True entries of ``selected`` (B, L), in row-major
    order (the order of ``t[selected]``): row b's entries come from generator b, so what one
    sample draws does not depend on the other rows of its batch."""
    count = int(selected.sum())
    if not isinstance(generator, SampleGenerators):
        return torch.rand((count, width), generator=generator, device=selected.device, dtype=dtype)
    generator.check_batch(selected.shape[0])
    per_row = selected.reshape(selected.shape[0], -1).sum(1).tolist()
    parts = [
        torch.rand((k, width), generator=g, device=g.device, dtype=dtype)
        for g, k in zip(generator.generators, per_row, strict=True)
    ]
    return torch.cat(parts).to(selected.device)


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded ``seed`` (e.g. a model's initial weights,
    so that one ``--seed`` fixes them), leaving the global generator as it was; None: no change."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
