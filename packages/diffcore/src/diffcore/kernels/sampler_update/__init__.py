"""The fused sampler update every continuous sampler's step is made of:
``a * x + b * denoised + c * noise + d * prev`` (one read of each input, one write)."""

from __future__ import annotations

import torch
from torch import Tensor

from diffcore.kernels._dispatch import backend_for
from diffcore.kernels.sampler_update import reference


def _check(name: str, t: Tensor, x: Tensor) -> None:
    if t.shape != x.shape or t.device != x.device or t.dtype != x.dtype:
        raise ValueError(
            f"sampler_update: {name} must match x in shape, dtype and device, got "
            f"{tuple(t.shape)} {t.dtype} on {t.device} for x {tuple(x.shape)} {x.dtype} on {x.device}"
        )


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
    """``a * x + b * denoised + c * noise + d * prev`` with fp32 arithmetic, in x's dtype.

    x, denoised, noise, prev: tensors of one shape, dtype and device; a, b, c, d: Python floats.
    float64 inputs are computed in float64 by the reference.
    """
    _check("denoised", denoised, x)
    if noise is not None:
        _check("noise", noise, x)
    if prev is not None:
        _check("prev", prev, x)
    if backend_for(x) == "triton" and x.dtype != torch.float64:
        from diffcore.kernels.sampler_update import triton as fused

        return fused.sampler_update(x, denoised, a, b, noise=noise, c=c, prev=prev, d=d)
    return reference.sampler_update(x, denoised, a, b, noise=noise, c=c, prev=prev, d=d)
