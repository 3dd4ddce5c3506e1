"""The sampler update as one Triton pass over memory."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

BLOCK = 1024


@triton.jit
def _update_kernel(
    x_ptr, den_ptr, noise_ptr, prev_ptr, out_ptr, n, a, b, c, d,
    HAS_NOISE: tl.constexpr, HAS_PREV: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    keep = offsets < n
    out = a * tl.load(x_ptr + offsets, mask=keep).to(tl.float32)
    out += b * tl.load(den_ptr + offsets, mask=keep).to(tl.float32)
    if HAS_NOISE:
        out += c * tl.load(noise_ptr + offsets, mask=keep).to(tl.float32)
    if HAS_PREV:
        out += d * tl.load(prev_ptr + offsets, mask=keep).to(tl.float32)
    tl.store(out_ptr + offsets, out.to(out_ptr.dtype.element_ty), mask=keep)


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
    """Triton version of :func:`diffcore.kernels.sampler_update.reference.sampler_update`."""
    x, denoised = x.contiguous(), denoised.contiguous()
    noise = noise.contiguous() if noise is not None else None
    prev = prev.contiguous() if prev is not None else None
    out = torch.empty_like(x)
    n = x.numel()
    if n == 0:
        return out
    grid = (triton.cdiv(n, BLOCK),)
    _update_kernel[grid](
        x, denoised, noise if noise is not None else x, prev if prev is not None else x, out, n,
        float(a), float(b), float(c), float(d),
        HAS_NOISE=noise is not None, HAS_PREV=prev is not None, BLOCK=BLOCK,
    )  # fmt: skip
    return out
