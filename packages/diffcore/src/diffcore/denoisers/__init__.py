"""Denoisers: the protocols, network wrappers and ``Denoiser -> Denoiser`` transforms."""

from diffcore.denoisers.compiled import Compiled, compiled
from diffcore.denoisers.network import NetworkDenoiser, Prediction, preconditioning
from diffcore.denoisers.protocols import Denoiser, TokenDenoiser
from diffcore.denoisers.transforms import (
    Cascade,
    Clamped,
    ClassifierFreeGuidance,
    Conditioned,
    DynamicThreshold,
    NoiseLevelExperts,
    condition,
    guidance,
    noise_augment,
)

__all__ = [
    "Cascade",
    "Clamped",
    "Compiled",
    "ClassifierFreeGuidance",
    "Conditioned",
    "Denoiser",
    "DynamicThreshold",
    "NetworkDenoiser",
    "NoiseLevelExperts",
    "Prediction",
    "TokenDenoiser",
    "compiled",
    "condition",
    "guidance",
    "noise_augment",
    "preconditioning",
]
