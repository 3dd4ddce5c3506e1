"""Forward corruption processes and their training losses: Gaussian noise, masking, degradation."""

from diffcore.processes.degradation import (
    Degradation,
    DegradationProcess,
    Restorer,
    blur,
    downsample,
    pixelate,
)
from diffcore.processes.gaussian import GaussianProcess
from diffcore.processes.mask import MaskProcess, clean_log_probs, cosine_mask_grid, linear_mask_grid

__all__ = [
    "Degradation",
    "DegradationProcess",
    "GaussianProcess",
    "MaskProcess",
    "Restorer",
    "blur",
    "clean_log_probs",
    "cosine_mask_grid",
    "downsample",
    "linear_mask_grid",
    "pixelate",
]
