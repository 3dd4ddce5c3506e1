"""Grids fitted to a model: where a few-step solver should put its noise levels.

Karras et al.'s sigma spacing and the trailing time spacing are fixed rules; the best levels for
a given solver, model and number of steps differ (Sabour et al. 2024, "Align Your Steps",
https://arxiv.org/abs/2404.14507, fit them per model). :func:`fit_grid` fits them directly to
the quantity a user cares about: the distance between the solver's result with ``steps`` steps
and a fine solve of the same probability-flow ODE from the same noise, by coordinate descent on
the log noise levels. A fitted grid is a plain grid tensor: pass it to any sampler, or store it
in a model folder's ``sampling.json`` (``options={"grid": [...]}``) for its pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from diffcore.denoisers.protocols import Denoiser
from diffcore.samplers.continuous import SAMPLERS, sample_dpmpp_2m
from diffcore.schedules import karras_grid

__all__ = ["fit_grid"]


@torch.no_grad()
def fit_grid(
    denoiser: Denoiser,
    noise: Tensor,
    sampler: str,
    steps: int,
    *,
    sigma_min: float,
    sigma_max: float,
    reference_steps: int = 200,
    sweeps: int = 4,
    start: Tensor | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> Tensor:
    """A grid of ``steps`` levels (then 0) from ``sigma_max`` down, for ``sampler`` on
    ``denoiser``, that minimises the mean squared distance between the sampler's results from
    ``noise`` (B, ...) and a ``reference_steps`` DPM-Solver++(2M) solve from the same noise.

    Levels 1..steps-1 move (the first stays at ``sigma_max``, the last may go down to a tenth of
    ``sigma_min``); each sweep tries, per level, steps of a shrinking share of the room between
    its neighbours in log sigma and keeps what lowers the error. Starts from ``start`` or the
    Karras grid. Costs ``steps`` network calls per trial (about 4 trials per level per sweep).
    progress(sweep, error) is called after every sweep. Fit with other noise than you evaluate
    with: the grid is fitted to these draws.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if steps == 1 and start is None:  # one step from sigma_max: no level to move
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    solve = SAMPLERS[sampler]
    reference = sample_dpmpp_2m(
        denoiser, noise, karras_grid(reference_steps, sigma_min / 10, sigma_max)
    )

    def error(grid: Tensor) -> float:
        # a fixed seed, so that stochastic samplers compare grids on the same draws
        out = solve(denoiser, noise, grid, generator=torch.Generator().manual_seed(0))
        return float((out.double() - reference.double()).pow(2).flatten(1).sum(1).mean())

    grid = (start if start is not None else karras_grid(steps, sigma_min, sigma_max)).double()
    if grid.shape != (steps + 1,) or float(grid[-1]) != 0.0:
        raise ValueError(f"start must be a grid of {steps + 1} levels ending at 0")
    logs = grid[:-1].log().tolist()
    floor, top = math.log(sigma_min / 10), float(grid[0])  # the top level stays exactly

    def build(levels: list[float]) -> Tensor:
        return torch.tensor([top, *map(math.exp, levels[1:]), 0.0], dtype=torch.float64)

    best = error(build(logs))
    for sweep in range(sweeps):
        share = 0.5 / 2**sweep
        for i in range(1, steps):
            lower = logs[i + 1] if i + 1 < steps else floor
            upper = logs[i - 1]
            for direction in (-1.0, 1.0):
                room = (upper - logs[i]) if direction > 0 else (logs[i] - lower)
                trial = list(logs)
                trial[i] = logs[i] + direction * share * room
                score = error(build(trial))
                if score < best:
                    best, logs = score, trial
                    break  # this level moved; the next
        if progress is not None:
            progress(sweep, best)
    return build(logs)
