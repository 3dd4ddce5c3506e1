"""Sampler choice by name and the options that go with it, one dataclass per family.

A sampler is picked by name from one registry per family (continuous: Gaussian samplers over
noise levels; token: masked-diffusion samplers over mask ratios). Options that only some samplers
take (``eta``, ``temperature``, ``entropy_bound``...) travel in ``options`` and are checked
against the chosen sampler's keyword arguments, so a new sampler option needs no change here:
add the keyword to the sampler (and its test) and every pipeline and command passes it on.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import torch
from torch import Tensor

from diffcore._utils import grid_levels
from diffcore.samplers import DISCRETE_SAMPLERS, SAMPLERS, sample_refine, sample_substitute

__all__ = [
    "REFINE_SAMPLERS",
    "ContinuousOptions",
    "RefineOptions",
    "SUBSTITUTE_SAMPLERS",
    "SamplerOptions",
    "SubstituteOptions",
    "TokenOptions",
    "sampler_names",
]

REFINE_SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "cold": partial(sample_refine, update="improved"),  # Cold Diffusion's Algorithm 2
    "direct": partial(sample_refine, update="naive"),  # restore, re-degrade (Algorithm 1)
}
"""Samplers of models trained to undo a degradation (``DegradationProcess``), by name."""

SUBSTITUTE_SAMPLERS: dict[str, Callable[..., Tensor]] = {"substitute": sample_substitute}
"""Samplers of token models trained on substitution (``SubstitutionProcess``), by name."""

# Set by the pipelines themselves (the data, the model, the edit), never by a user's options.
_RESERVED = {
    "generator",
    "callback",
    "x_init",
    "t_start",
    "known",
    "mask",
    "mask_id",
    "time_independent",
    "align_blocks",
    "degrade",
    "noise_level",
    "update",
    "process",
}


def sampler_names(family: str) -> tuple[str, ...]:
    """The sampler names of ``family`` ("continuous", "token", "refine" or "substitute"), as
    commands list them."""
    registry = {
        "continuous": SAMPLERS,
        "token": DISCRETE_SAMPLERS,
        "refine": REFINE_SAMPLERS,
        "substitute": SUBSTITUTE_SAMPLERS,
    }
    if family not in registry:
        raise ValueError(f"family must be one of {', '.join(registry)}, got {family!r}")
    return tuple(registry[family])


@dataclass(frozen=True)
class SamplerOptions:
    """How to sample: the sampler's name, its number of steps, the guidance scale, the grid of
    levels it walks, and the sampler's own keyword options (checked against its signature)."""

    sampler: str
    steps: int | None
    guidance: float = 1.0  # classifier-free guidance scale; 1 = the plain conditional model
    grid: str | Sequence[float] | None = None  # a spacing's name, or the levels; None: usual
    options: Mapping[str, Any] = field(default_factory=dict)

    REGISTRY: ClassVar[Mapping[str, Callable[..., Tensor]]] = {}
    GRIDS: ClassVar[tuple[str, ...]] = ()
    LEVELS: ClassVar[bool] = False  # whether an explicit list of levels may be the grid
    FAMILY: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if self.sampler not in self.REGISTRY:
            raise ValueError(
                f"unknown {self.FAMILY} sampler {self.sampler!r}; expected one of "
                f"{', '.join(self.REGISTRY)}"
            )
        if self.steps is not None and (
            isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1
        ):
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if not self.guidance >= 0.0:
            raise ValueError(f"guidance must be >= 0 (1 = off), got {self.guidance}")
        if isinstance(self.grid, str) or self.grid is None:
            if self.grid is not None and self.grid not in self.GRIDS:
                raise ValueError(
                    f"grid must be one of {', '.join(self.GRIDS)} or a list of levels, got "
                    f"{self.grid!r}"
                )
        else:
            self._check_levels()
        accepted = self.accepted_options()
        for key in self.options:
            if key in _RESERVED or key not in accepted:
                raise ValueError(
                    f"sampler {self.sampler!r} takes no option {key!r}; its options are "
                    f"{', '.join(sorted(accepted)) or 'none'}"
                )
        object.__setattr__(self, "options", dict(self.options))

    def _check_levels(self) -> None:
        """An explicit grid: steps + 1 strictly decreasing levels ending at 0."""
        if not self.LEVELS:
            raise ValueError(f"{self.FAMILY} samplers take a grid by name, not levels")
        try:
            levels = [float(v) for v in self.grid]
        except (TypeError, ValueError):
            raise ValueError(
                f"grid must be a name or a list of numbers, got {self.grid!r}"
            ) from None
        grid_levels(torch.tensor(levels, dtype=torch.float64), var="sigma")
        if self.steps is not None and len(levels) != self.steps + 1:
            raise ValueError(
                f"a grid of {len(levels)} levels makes {len(levels) - 1} steps, not {self.steps}"
            )
        object.__setattr__(self, "grid", tuple(levels))

    @classmethod
    def build(
        cls,
        sampler: str | None,
        steps: int | None,
        guidance: float,
        options: Mapping[str, Any] | None,
    ) -> SamplerOptions:
        """From a pipeline call's keywords: ``options`` may also hold "grid"; a None sampler
        is the family's default."""
        options = dict(options or {})
        grid = options.pop("grid", None)
        return cls(sampler or cls.sampler, steps, guidance, grid, options)

    @property
    def function(self) -> Callable[..., Tensor]:
        return self.REGISTRY[self.sampler]

    def accepted_options(self) -> set[str]:
        """The keyword options the sampler takes from users."""
        params = inspect.signature(self.function).parameters.values()
        return {p.name for p in params if p.kind is p.KEYWORD_ONLY} - _RESERVED

    def record(self) -> dict[str, Any]:
        """The settings as plain values, for run records and file headers."""
        out = {"sampler": self.sampler, "steps": self.steps, "guidance": self.guidance}
        if self.grid is not None:
            out["grid"] = self.grid if isinstance(self.grid, str) else list(self.grid)
        return {**out, **self.options}


@dataclass(frozen=True)
class ContinuousOptions(SamplerOptions):
    """Options of the Gaussian samplers (``diffcore.samplers.SAMPLERS``). grid: "karras"
    (Karras et al.'s sigma spacing, the ODE solvers' default), "trailing" (even steps in
    training time, the default of the ancestral samplers ddpm, ddim and euler_ancestral), or
    the steps + 1 noise levels themselves (e.g. fitted: ``ContinuousPipeline.fit_grid``)."""

    sampler: str = "dpmpp_2m"
    steps: int | None = 20

    REGISTRY: ClassVar[Mapping[str, Callable[..., Tensor]]] = SAMPLERS
    GRIDS: ClassVar[tuple[str, ...]] = ("karras", "trailing")
    LEVELS: ClassVar[bool] = True
    FAMILY: ClassVar[str] = "continuous"

    def __post_init__(self) -> None:
        if self.steps is None:
            raise ValueError("a continuous sampler needs a number of steps")
        super().__post_init__()


@dataclass(frozen=True)
class TokenOptions(SamplerOptions):
    """Options of the masked-diffusion samplers (``diffcore.samplers.DISCRETE_SAMPLERS``).
    steps: None = one per generated token (the finest grid). grid: "linear" (the same count
    revealed per step) or "cosine" (MaskGIT's)."""

    sampler: str = "confidence"
    steps: int | None = None

    REGISTRY: ClassVar[Mapping[str, Callable[..., Tensor]]] = DISCRETE_SAMPLERS
    GRIDS: ClassVar[tuple[str, ...]] = ("linear", "cosine")
    FAMILY: ClassVar[str] = "token"


@dataclass(frozen=True)
class RefineOptions(SamplerOptions):
    """Options of the refinement samplers (``REFINE_SAMPLERS``) of models trained to undo a
    degradation: "cold" (the improved update, default) or "direct". grid: "linear" (equal
    steps of severity from 1 to 0)."""

    sampler: str = "cold"
    steps: int | None = 20

    REGISTRY: ClassVar[Mapping[str, Callable[..., Tensor]]] = REFINE_SAMPLERS
    GRIDS: ClassVar[tuple[str, ...]] = ("linear",)
    FAMILY: ClassVar[str] = "refinement"

    def __post_init__(self) -> None:
        if self.steps is None:
            raise ValueError("a refinement sampler needs a number of steps")
        super().__post_init__()


@dataclass(frozen=True)
class SubstituteOptions(TokenOptions):
    """Options of token models trained on substitution (``SUBSTITUTE_SAMPLERS``): the levels
    are substitution shares, on the same "linear" / "cosine" grids as masking."""

    sampler: str = "substitute"
    steps: int | None = None

    REGISTRY: ClassVar[Mapping[str, Callable[..., Tensor]]] = SUBSTITUTE_SAMPLERS
    FAMILY: ClassVar[str] = "substitution"
