"""A cascade: a base pipeline, then super-resolution stages, each sampled given the previous
stage's samples (Ho et al. 2021, https://arxiv.org/abs/2106.15282). A stage is any
continuous pipeline whose model takes ``low_res=`` (an image model trained with ``low_res``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["CascadePipeline"]


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
