"""What a sampler reports to its ``callback`` after every step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import Tensor


@dataclass(frozen=True)
class Step:
    """Position of the sampler in its grid.

    index: 0-based step number; total: number of steps the sampler will take.
    level: noise level the step started from (sigma for continuous samplers, time t for
    discrete ones); level_next: the level it ended at.
    """

    index: int
    total: int
    level: float
    level_next: float


class Callback(Protocol):
    """``callback(step, x, denoised)``: called once per step with the new state ``x`` and the
    denoiser's latest estimate (x0 for continuous samplers, predicted tokens for discrete ones)."""

    def __call__(self, step: Step, x: Tensor, denoised: Tensor) -> None: ...
