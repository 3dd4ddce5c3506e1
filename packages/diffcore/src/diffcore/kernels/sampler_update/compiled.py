"""The sampler update through ``torch.compile``: the fused path where no Triton kernel runs
(on CPU inductor writes one C++ loop that reads each input once and writes the result once).

Coefficients enter the compiled function as 0-d tensors, not Python floats: torch.compile
specializes on float arguments, which would compile anew for every step of a sampler.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffcore.kernels._dispatch import compiled


def _scalar(value: float, dtype: torch.dtype) -> Tensor:
    return torch.tensor(value, dtype=dtype)  # a CPU scalar: inductor reads it as a kernel argument


def _combine(
    x: Tensor,
    denoised: Tensor,
    noise: Tensor | None,
    prev: Tensor | None,
    a: Tensor,
    b: Tensor,
    c: Tensor,
    d: Tensor,
) -> Tensor:
    work = torch.promote_types(x.dtype, torch.float32)
    out = x.to(work) * a + denoised.to(work) * b
    if noise is not None:
        out = out + noise.to(work) * c
    if prev is not None:
        out = out + prev.to(work) * d
    return out.to(x.dtype)


def _guided(
    x: Tensor,
    cond: Tensor,
    uncond: Tensor,
    noise: Tensor | None,
    prev: Tensor | None,
    scale: Tensor,
    a: Tensor,
    b: Tensor,
    c: Tensor,
    d: Tensor,
) -> tuple[Tensor, Tensor]:
    work = torch.promote_types(x.dtype, torch.float32)
    denoised = torch.lerp(uncond.to(work), cond.to(work), scale)  # enters the sum unrounded
    return _combine(x, denoised, noise, prev, a, b, c, d), denoised.to(x.dtype)


def sampler_update(
    x: Tensor,
    denoised: Tensor,
    a: float,
    b: float,
    *,
    noise: Tensor | None = None,
    c: float = 0.0,
    prev: Tensor | None = None,
    d: float = 0.0,
) -> Tensor:
    """The reference's ``a * x + b * denoised + c * noise + d * prev``, compiled."""
    work = torch.promote_types(x.dtype, torch.float32)
    k = [_scalar(v, work) for v in (a, b, c, d)]
    return compiled(_combine)(x, denoised, noise, prev, *k)


def guided_sampler_update(
    x: Tensor,
    cond: Tensor,
    uncond: Tensor,
    guidance_scale: float,
    a: float,
    b: float,
    *,
    noise: Tensor | None = None,
    c: float = 0.0,
    prev: Tensor | None = None,
    d: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """The reference's guided update (lerp, then the sum), compiled."""
    work = torch.promote_types(x.dtype, torch.float32)
    k = [_scalar(v, work) for v in (guidance_scale, a, b, c, d)]
    return compiled(_guided)(x, cond, uncond, noise, prev, *k)
