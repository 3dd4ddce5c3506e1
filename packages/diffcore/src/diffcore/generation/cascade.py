"""A cascade: a base pipeline, then super-resolution stages, each sampled given the previous
stage's samples (Ho et al. 2021, https://arxiv.org/abs/2106.15282). A stage is any
continuous pipeline whose model takes ``low_res=`` (an image or spectrogram model trained with
``low_res``): its U-Net stacks the low-resolution input, upsampled, onto x, and it learns from
that input noise-augmented (conditioning augmentation), so a base's imperfect samples still
serve at sampling time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from diffcore.denoisers import noise_augment

__all__ = ["CascadePipeline", "check_stage", "low_res_input", "stage_conditions"]


def low_res_input(
    x: Tensor,
    size: tuple[int, int],
    noise: float,
    generator: Any = None,
    *,
    fixed: bool = False,
) -> dict[str, Tensor]:
    """A cascade stage's conditioning: ``x`` (B, C, H, W) area-downsampled to ``size`` and
    noise-augmented (``diffcore.denoisers.noise_augment``) at a VE level drawn uniformly in
    [0, noise] per sample (training) or, ``fixed``, at noise / 2 (sampling)."""
    small = torch.nn.functional.interpolate(x.float(), size=size, mode="area")
    if fixed:
        sigma = torch.full((len(small),), noise / 2, device=small.device)
    else:
        sigma = noise * torch.rand(len(small), generator=generator, device=small.device)
    augmented, sigma = noise_augment(small, sigma, generator)
    return {"low_res": augmented, "low_res_sigma": sigma}


def stage_conditions(
    low_res: Tensor | None,
    stage: tuple[int, int] | None,
    noise: float,
    *,
    n: int,
    channels: int,
    device: Any,
) -> dict[str, Tensor]:
    """What a pipeline's ``conditions`` add for a model that is a cascade stage (``stage``: the
    size of its low-resolution input, None for any other model): ``low_res`` (n, C, h, w) in
    the data's range, area-resized to ``stage`` and augmented at half the training noise with
    noise seeded 0 (a call is repeatable). ValueError when one is given without the other."""
    if (low_res is None) != (stage is None):
        raise ValueError(
            "a cascade stage needs low_res= (the samples of the stage before)"
            if low_res is None
            else "low_res was given but the model is no cascade stage"
        )
    if low_res is None or stage is None:
        return {}
    low_res = torch.as_tensor(low_res, device=device)
    if low_res.ndim != 4 or tuple(low_res.shape[:2]) != (n, channels):
        raise ValueError(f"low_res must be ({n}, {channels}, h, w), got {tuple(low_res.shape)}")
    generator = torch.Generator(device=device).manual_seed(0)
    return low_res_input(low_res, stage, noise, generator, fixed=True)


def check_stage(low_res: Any, noise: float, unet: Any, owner: str) -> tuple[int, int] | None:
    """A model config's ``low_res`` as (H, W), or None; ValueError (naming ``owner``, the config
    class) when it is not two positive sizes, when its U-Net does not take the low-resolution
    input exactly when it is a stage, or when the augmentation ``noise`` is negative."""
    if low_res is not None:
        low_res = tuple(int(v) for v in low_res)
        if len(low_res) != 2 or min(low_res) < 1:
            raise ValueError(f"{owner}.low_res must be (H, W), got {low_res}")
    if (low_res is not None) != (unet.low_res_channels == unet.in_channels):
        raise ValueError(
            "a cascade stage (low_res) needs unet.low_res_channels == in_channels, and only it"
        )
    if not noise >= 0:
        raise ValueError(f"{owner}.low_res_noise must be >= 0, got {noise}")
    return low_res


class CascadePipeline:
    """``sample`` runs ``base`` then each of ``stages`` in order, every stage conditioned on the
    samples before it; everything else (the model, sampler options, class names...) is the
    last stage's, so a command treats the cascade as the pipeline of its final resolution.
    ``samples`` keeps each stage's output of the last call (base first)."""

    def __init__(self, base: Any, stages: Sequence[Any]) -> None:
        if not stages:
            raise ValueError("a cascade needs at least one super-resolution stage")
        self.base, self.stages = base, list(stages)
        self.samples: list[Tensor] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stages[-1], name)

    @torch.no_grad()
    def sample(self, n: int, **kwargs: Any) -> Tensor:
        """``n`` samples at the last stage's size; kwargs (sampler, steps, seed, labels...) go to
        every stage."""
        x = self.base.sample(n, **kwargs)
        self.samples = [x]
        for stage in self.stages:
            x = stage.sample(n, low_res=x, **kwargs)
            self.samples.append(x)
        return x

    def edit(self, *args: Any, **kwargs: Any) -> Tensor:
        raise ValueError("edit and inpaint run on one model: give the stage itself as --model")

    inpaint = edit
