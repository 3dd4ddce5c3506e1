"""Samplers: pure functions ``sample_<algo>(model, x, schedule, /, *, generator, callback, ...)``.

- continuous (Gaussian): DDPM, DDIM, Euler, Euler-ancestral, Heun, DPM-Solver++(2M) and (3M),
  UniPC, and SMC inpainting — over a grid of noise levels (``diffcore.schedules``);
- discrete (masking): ancestral and confidence-ordered unmasking — over a grid of mask ratios
  (``diffcore.processes.mask``);
- refinement for deterministic degradations (cold diffusion) — over a grid of severities — and
  for tokens trained on substitution (``sample_substitute``);
- ``fit_grid``: the noise levels a few-step solver should walk for a given model.
"""

from diffcore.samplers.continuous import (
    SAMPLERS,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_dpmpp_3m,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
    sample_unipc,
)
from diffcore.samplers.discrete import (
    CONFIDENCES,
    DISCRETE_SAMPLERS,
    sample_confidence,
    sample_masked_ancestral,
)
from diffcore.samplers.grids import fit_grid
from diffcore.samplers.refine import sample_refine
from diffcore.samplers.smc import sample_smc
from diffcore.samplers.step import Callback, Step
from diffcore.samplers.substitute import sample_substitute

__all__ = [
    "CONFIDENCES",
    "DISCRETE_SAMPLERS",
    "SAMPLERS",
    "Callback",
    "Step",
    "fit_grid",
    "sample_confidence",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
    "sample_dpmpp_3m",
    "sample_unipc",
    "sample_euler",
    "sample_euler_ancestral",
    "sample_heun",
    "sample_masked_ancestral",
    "sample_refine",
    "sample_smc",
    "sample_substitute",
]
