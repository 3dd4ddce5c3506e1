"""The sampler update, specified in plain PyTorch (the spec and the CPU path)."""

from __future__ import annotations

import torch
from torch import Tensor


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
    """``a * x + b * denoised + c * noise + d * prev`` in fp32 (fp64 stays fp64), returned in
    x's dtype. Tensors share x's shape; a, b, c, d are Python floats.

    One output buffer accumulates every term: half-precision inputs are upcast term by term
    inside the in-place adds (mixed-dtype in-place ops compute in the output's dtype), so no
    full-size temporaries are made and the result is rounded to x's dtype once, at the end.
    """
    work = torch.promote_types(x.dtype, torch.float32)
    # One pass makes the output: mul allocates it in x's dtype; a half-precision x is upcast by
    # .to(), which already copies (mul_ then never touches the caller's x).
    out = torch.mul(x, a) if x.dtype == work else x.to(work).mul_(a)
    out.add_(denoised, alpha=b)
    if noise is not None:
        out.add_(noise, alpha=c)
    if prev is not None:
        out.add_(prev, alpha=d)
    return out.to(x.dtype)


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
    """The update with classifier-free guidance folded in: ``denoised = lerp(uncond, cond,
    guidance_scale)`` (``uncond + scale * (cond - uncond)``, torch.lerp's rounding), then
    ``a * x + b * denoised + c * noise + d * prev``, both in fp32 (fp64 stays fp64).

    Returns (the update, denoised), each in x's dtype: samplers hand denoised to callbacks and
    multistep solvers keep it as the next step's ``prev``.
    """
    work = torch.promote_types(x.dtype, torch.float32)
    denoised = torch.lerp(uncond.to(work), cond.to(work), guidance_scale)
    out = sampler_update(x, denoised, a, b, noise=noise, c=c, prev=prev, d=d)
    return out, denoised.to(x.dtype)
