"""What every pipeline shares: a model on a device, loading and saving, precision, and batches
of samples that each carry their own seed.

Sample i of a call seeded ``seed`` draws all its randomness from a generator seeded
``sample_seeds(seed, n)[i]`` (:mod:`diffcore.seeding`), so the same seed gives the same samples
whatever the batch size.
"""

from __future__ import annotations

import contextlib
from abc import ABC
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self, TypedDict

import torch
from torch import nn
from tqdm.auto import tqdm

from diffcore.generation.options import SamplerOptions
from diffcore.io import from_pretrained, read_sampling, save_pretrained, write_sampling
from diffcore.samplers import Callback
from diffcore.seeding import SampleGenerators, sample_seeds

__all__ = ["PRECISIONS", "Pipeline", "Run", "Sampling", "batches"]


class Sampling(TypedDict, total=False):
    """The keywords of every pipeline's ``sample``, ``edit``, ``inpaint`` and ``infill``: one
    name and one meaning in every domain."""

    sampler: str | None  # by name (``sampler_names``); None or absent: the domain's default
    steps: int | None  # sampler steps; None (token domains): one per generated token
    guidance: float  # classifier-free guidance scale; 1 = the plain conditional model
    seed: int  # sample i's randomness depends on (seed, i) alone
    batch_size: int  # samples per sampler call; results do not depend on it
    options: Mapping[str, Any] | None  # the sampler's own keyword options, and "grid"
    progress: bool  # a progress bar on stderr
    callback: Callback | None  # called after every step with (Step, x, denoised)


class Run(TypedDict):
    """How a call runs, beside what it samples with: seed, batches, progress."""

    seed: int
    batch_size: int
    progress: bool
    callback: Callback | None


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def batches(order: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Consecutive chunks of ``order`` (sample indices) of at most ``batch_size``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    for start in range(0, len(order), batch_size):
        yield list(order[start : start + batch_size])


class Pipeline(ABC):
    """A trained model ready to generate: ``from_pretrained`` / ``save_pretrained`` (a folder of
    ``config.json`` + ``model.safetensors``), device, precision and per-sample seeding.

    Subclasses set ``model_class`` (the ``nn.Module`` with a dataclass ``config`` that
    ``diffcore.io`` loads) and add their domain's conditions and outputs.
    precision: "fp32", or "bf16" / "fp16" autocast for the network calls (samplers stay fp32).
    """

    model_class: ClassVar[type[nn.Module]]
    options_class: ClassVar[type[SamplerOptions]]
    default_batch_size: ClassVar[int] = 64

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        sampling: Mapping[str, Any] | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.device = torch.device(device)
        self.precision = precision
        self.model = model.to(self.device).eval()
        # the model folder's sampling.json: what a call that names no sampler/steps uses
        self.sampling_defaults = dict(sampling or {})

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, device: str | torch.device = "cpu", **options: Any
    ) -> Self:
        """Load a model folder written by ``save_pretrained`` (or a training run's ``final/``)."""
        model = from_pretrained(cls.model_class, directory, device=device)
        options.setdefault("sampling", read_sampling(directory))
        return cls(model, device=device, **options)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the model folder ``from_pretrained`` reads; returns it."""
        directory = save_pretrained(self.model, directory)
        self.save_sampling(directory)
        return directory

    def save_sampling(self, directory: str | Path) -> None:
        """Write the pipeline's default sampling settings into a model folder, if it has any."""
        if self.sampling_defaults:
            write_sampling(directory, self.sampling_defaults)

    def plan(self, sampling: Mapping[str, Any]) -> tuple[SamplerOptions, Run]:
        """Split a call's ``Sampling`` keywords into the sampler's options (checked) and how
        the call runs; a keyword that is not one of them is a TypeError, as in any call."""
        unknown = set(sampling) - set(Sampling.__annotations__)
        if unknown:
            raise TypeError(
                f"unexpected keyword argument(s) {', '.join(sorted(unknown))}; the sampling "
                f"keywords are {', '.join(Sampling.__annotations__)}"
            )
        defaults = self.sampling_defaults
        sampler = sampling.get("sampler") or self.default_sampler
        options = dict(defaults.get("options", {}))
        if sampler != self.default_sampler:  # another sampler keeps only the default grid
            options = {k: v for k, v in options.items() if k == "grid"}
        steps = sampling.get("steps", defaults.get("steps", self.options_class.steps))
        levels = options.get("grid")
        if levels is not None and not isinstance(levels, str) and len(levels) != (steps or 0) + 1:
            options.pop("grid")  # the folder's fitted levels are for another number of steps
        plan = self.options_class.build(
            sampler,
            steps,
            sampling.get("guidance", defaults.get("guidance", 1.0)),
            {**options, **(sampling.get("options") or {})},
        )
        run = Run(
            seed=sampling.get("seed", 0),
            batch_size=sampling.get("batch_size", self.default_batch_size),
            progress=sampling.get("progress", False),
            callback=sampling.get("callback"),
        )
        return plan, run

    @property
    def default_sampler(self) -> str:
        return self.sampling_defaults.get("sampler") or self.options_class.sampler

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def generators(self, seed: int, n: int) -> list[torch.Generator]:
        """One generator per sample of a call seeded ``seed`` (sample i's depends on seed, i)."""
        return SampleGenerators(sample_seeds(seed, n), device=self.device).generators

    @staticmethod
    def progress_bar(total: int, desc: str, enabled: bool) -> tqdm:
        return tqdm(total=total, desc=desc, unit="step", disable=not enabled, delay=0.1)

    @staticmethod
    def check_count(n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer (samples to draw), got {n!r}")
