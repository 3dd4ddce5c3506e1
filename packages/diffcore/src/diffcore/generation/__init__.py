"""The generation tier: what every domain pipeline shares (diffusers' ``DiffusionPipeline``,
done once).

- :class:`ContinuousPipeline` (images, spectrograms): ``sample``, ``edit`` (partial re-noising,
  SDEdit) and ``inpaint``, for Gaussian diffusion and for models trained to undo a
  degradation (refinement samplers, :class:`RefineOptions`);
- :class:`TokenPipeline` (text, proteins): ``fill`` masked positions — sampling, infilling and
  partial re-noising (``remask``) are all fills;
- refiners (``refine``): a continuous model edits inputs made anywhere from their own level;
- both: a sampler by name with its options (:class:`ContinuousOptions`, :class:`TokenOptions`),
  classifier-free guidance, batches of per-sample seeds (results independent of batch size),
  progress, device and precision, ``from_pretrained`` / ``save_pretrained``.
"""

from diffcore.generation.base import PRECISIONS, Pipeline, Run, Sampling
from diffcore.generation.cascade import CascadePipeline
from diffcore.generation.continuous import (
    ContinuousPipeline,
    check_experts,
    expert_denoiser,
    network_calls,
    sampling_grid,
    steps_for_calls,
)
from diffcore.generation.options import (
    REFINE_SAMPLERS,
    SUBSTITUTE_SAMPLERS,
    ContinuousOptions,
    RefineOptions,
    SamplerOptions,
    SubstituteOptions,
    TokenOptions,
    sampler_names,
)
from diffcore.generation.refine import predict_levels, refine, strength_for_level
from diffcore.generation.tokens import TokenPipeline, mask_experts, remask

__all__ = [
    "PRECISIONS",
    "REFINE_SAMPLERS",
    "CascadePipeline",
    "SUBSTITUTE_SAMPLERS",
    "ContinuousOptions",
    "ContinuousPipeline",
    "Pipeline",
    "RefineOptions",
    "Run",
    "SamplerOptions",
    "Sampling",
    "SubstituteOptions",
    "TokenOptions",
    "TokenPipeline",
    "check_experts",
    "expert_denoiser",
    "network_calls",
    "predict_levels",
    "refine",
    "strength_for_level",
    "mask_experts",
    "remask",
    "sampler_names",
    "sampling_grid",
    "steps_for_calls",
]
