"""Samplers: pure functions ``sample_<algo>(denoiser, x, schedule, /, *, generator, callback, ...)``."""

from diffcore.samplers.continuous import (
    SAMPLERS,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
)
from diffcore.samplers.smc import sample_smc
from diffcore.samplers.step import Callback, Step

__all__ = [
    "SAMPLERS",
    "Callback",
    "Step",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_euler_ancestral",
    "sample_heun",
    "sample_smc",
]
