"""``Denoiser -> Denoiser`` transforms: conditioning, guidance, clamping, experts, cascades.

Samplers never branch on any of these: whatever a transform does happens inside the callable
they are given (k-diffusion's design).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from diffcore._utils import per_sample
from diffcore.denoisers.protocols import Denoiser
from diffcore.seeding import Generator, randn


@dataclass(frozen=True)
class Conditioned:
    """``denoiser`` with keyword conditioning bound: ``Conditioned(d, labels=y)(x, s) == d(x, s, labels=y)``."""

    denoiser: Denoiser
    cond: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        return self.denoiser(x, sigma, **{**self.cond, **cond})


def condition(denoiser: Denoiser, **cond: Any) -> Conditioned:
    """Bind conditioning (labels, captions, low-res images...) so a sampler can call ``D(x, sigma)``."""
    return Conditioned(denoiser, cond)


def _concat_cond(value: Any, other: Any) -> Any:
    if isinstance(value, Tensor):
        return torch.cat([value, other])
    if value is None and other is None:
        return None
    raise TypeError(
        f"guidance can only batch tensor conditioning, got {type(value).__name__} and "
        f"{type(other).__name__}"
    )


@dataclass(frozen=True)
class ClassifierFreeGuidance:
    """Classifier-free guidance (Ho & Salimans 2022, https://arxiv.org/abs/2207.12598) in one
    batched network call: ``D_u + scale * (D_c - D_u)``.

    cond / uncond: the conditional and unconditional keyword arguments, each tensor batched like
    x (e.g. ``labels=y`` and ``labels=null_labels``). scale 1 is the plain conditional model,
    0 the unconditional one.
    """

    denoiser: Denoiser
    scale: float
    cond: Mapping[str, Any]
    uncond: Mapping[str, Any]

    def __post_init__(self) -> None:
        if set(self.cond) != set(self.uncond):
            raise ValueError(
                f"cond and uncond must name the same arguments, got {sorted(self.cond)} and "
                f"{sorted(self.uncond)}"
            )

    def __call__(self, x: Tensor, sigma: Tensor, **extra: Any) -> Tensor:
        if self.scale == 1.0:
            return self.denoiser(x, sigma, **self.cond, **extra)
        batch = x.shape[0]
        both = {k: _concat_cond(v, self.uncond[k]) for k, v in self.cond.items()}
        sigma = torch.as_tensor(sigma, device=x.device).expand(batch)
        out = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), **both, **extra)
        cond_out, uncond_out = out[:batch], out[batch:]
        return torch.lerp(uncond_out, cond_out, self.scale)


def guidance(
    denoiser: Denoiser, scale: float, cond: Mapping[str, Any], uncond: Mapping[str, Any]
) -> ClassifierFreeGuidance:
    """Classifier-free guidance transform; see :class:`ClassifierFreeGuidance`."""
    return ClassifierFreeGuidance(denoiser, float(scale), dict(cond), dict(uncond))


@dataclass(frozen=True)
class Clamped:
    """Clamp the x0 estimate into [low, high] (static thresholding, for data known to lie there)."""

    denoiser: Denoiser
    low: float = -1.0
    high: float = 1.0

    def __call__(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        return self.denoiser(x, sigma, **cond).clamp(self.low, self.high)


@dataclass(frozen=True)
class DynamicThreshold:
    """Imagen's dynamic thresholding (Saharia et al. 2022, https://arxiv.org/abs/2205.11487):
    per sample, s = max(1, quantile(|x0|, q)); x0 <- clamp(x0, -s, s) / s."""

    denoiser: Denoiser
    quantile: float = 0.995

    def __call__(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        x0 = self.denoiser(x, sigma, **cond)
        flat = x0.reshape(x0.shape[0], -1).abs().float()
        s = torch.quantile(flat, self.quantile, dim=1).clamp(min=1.0).to(x0.dtype)
        s = s.reshape(-1, *([1] * (x0.ndim - 1)))
        return torch.maximum(torch.minimum(x0, s), -s) / s


@dataclass(frozen=True)
class NoiseLevelExperts:
    """A different denoiser for each range of noise levels (eDiff-I, Balaji et al. 2022).

    ``boundaries`` are increasing sigmas splitting [0, inf) into ``len(experts)`` ranges: expert i
    handles ``boundaries[i-1] <= sigma < boundaries[i]``. Each sample goes to its own expert.
    Token denoisers compose the same way, by their time (the masked share t in [0, 1]); their
    outputs (logits) need not have the input's shape.
    """

    experts: Sequence[Denoiser]
    boundaries: Sequence[float]

    def __post_init__(self) -> None:
        if len(self.experts) != len(self.boundaries) + 1:
            raise ValueError(
                f"{len(self.experts)} experts need {len(self.experts) - 1} boundaries, "
                f"got {len(self.boundaries)}"
            )
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:], strict=False)):
            raise ValueError(f"boundaries must increase strictly, got {list(self.boundaries)}")

    def __call__(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        sigma = torch.as_tensor(sigma, device=x.device).expand(x.shape[0])
        edges = torch.as_tensor(self.boundaries, device=sigma.device, dtype=sigma.dtype)
        which = torch.bucketize(sigma, edges, right=True)
        first = int(which[0])
        if bool((which == first).all()):  # the common case: one call, no scatter
            return self.experts[first](x, sigma, **cond)
        out = None
        for i in which.unique().tolist():
            rows = (which == i).nonzero().squeeze(1)
            sub = {k: v[rows] if isinstance(v, Tensor) else v for k, v in cond.items()}
            y = self.experts[i](x[rows], sigma[rows], **sub)
            if out is None:  # logits of token denoisers: (B, L, V) for x (B, L)
                out = y.new_empty((x.shape[0], *y.shape[1:]))
            out[rows] = y
        return out


def _upsample_bilinear(x: Tensor, size: tuple[int, ...]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class Cascade:
    """A base stage and a super-resolution stage (Ho et al. 2021, https://arxiv.org/abs/2106.15282).

    The super-resolution denoiser is called as ``super_res(x, sigma, low_res=..., aug_sigma=...)``:
    the base output is upsampled and noise-augmented with level ``aug_sigma`` (the same augmentation
    used in training, see :func:`noise_augment`), which makes the second stage robust to the first
    stage's mistakes.
    """

    base: Denoiser
    super_res: Denoiser
    aug_sigma: float = 0.1
    upsample: Callable[[Tensor, tuple[int, ...]], Tensor] = _upsample_bilinear

    def super_res_stage(
        self, low_res: Tensor, size: tuple[int, ...], generator: Generator = None
    ) -> Conditioned:
        """The second stage's denoiser, conditioned on the upsampled, noise-augmented ``low_res``."""
        up = self.upsample(low_res, size)
        aug = torch.full((up.shape[0],), self.aug_sigma, device=up.device, dtype=up.dtype)
        noisy, aug = noise_augment(up, aug, generator)
        return condition(self.super_res, low_res=noisy, aug_sigma=aug)

    def sample(
        self,
        sampler: Callable[..., Tensor],
        noise_low: Tensor,
        noise_high: Tensor,
        base_sigmas: Tensor,
        super_res_sigmas: Tensor,
        *,
        generator: Generator = None,
        **options: Any,
    ) -> tuple[Tensor, Tensor]:
        """Run both stages with one sampler; returns (low-res, high-res) samples."""
        low = sampler(self.base, noise_low, base_sigmas, generator=generator, **options)
        stage = self.super_res_stage(low, tuple(noise_high.shape[2:]), generator)
        high = sampler(stage, noise_high, super_res_sigmas, generator=generator, **options)
        return low, high


def noise_augment(
    x: Tensor, aug_sigma: Tensor, generator: Generator = None
) -> tuple[Tensor, Tensor]:
    """Noise-augment conditioning images: ``alpha * x + sigma_vp * eps`` at VE level ``aug_sigma``
    (B,), returned with the level so the network can be told it. Used to train and sample cascades."""
    noise = randn(x.shape, generator, device=x.device, dtype=x.dtype)
    s = per_sample(aug_sigma, x)
    return (x + s * noise) * (1.0 + s**2).rsqrt(), aug_sigma
