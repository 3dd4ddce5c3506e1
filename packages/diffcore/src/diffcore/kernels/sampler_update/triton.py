"""The sampler update as one Triton pass over memory (imports triton: load it lazily).

The op is memory-bound: per element it reads 2-4 values and writes one, with 2-4 fused
multiply-adds in between, so the kernel's only jobs are to touch each byte once and to keep
the arithmetic in fp32 whatever the storage dtype.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl
from torch import Tensor

BLOCK = 1024  # elements per program: 8 per thread with the default 4 warps


@triton.jit
def _sampler_update_kernel(
    x_ptr,
    denoised_ptr,
    noise_ptr,
    prev_ptr,
    out_ptr,
    n,
    a,
    b,
    c,
    d,
    HAS_NOISE: tl.constexpr,
    HAS_PREV: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # int64 offsets: tensors past 2**31 elements (a batch of large latents) must not wrap.
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < n
    out = a * tl.load(x_ptr + offsets, mask=inside).to(tl.float32)
    out += b * tl.load(denoised_ptr + offsets, mask=inside).to(tl.float32)
    # Absent inputs are compiled out (constexpr flags), so they cost no memory traffic.
    if HAS_NOISE:
        out += c * tl.load(noise_ptr + offsets, mask=inside).to(tl.float32)
    if HAS_PREV:
        out += d * tl.load(prev_ptr + offsets, mask=inside).to(tl.float32)
    tl.store(out_ptr + offsets, out.to(out_ptr.dtype.element_ty), mask=inside)


def _dense(t: Tensor) -> bool:
    """True when t's elements fill one gap-free block of memory in some dimension order
    (contiguous, channels-last, a transpose...), so it can be walked as a flat array."""
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride(), strict=True), key=lambda p: p[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


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
    """Triton version of :func:`diffcore.kernels.sampler_update.reference.sampler_update`.

    Inputs must already be checked (same shape, dtype, device; fp16, bf16 or fp32).
    """
    given = [t for t in (denoised, noise, prev) if t is not None]
    # Flat indexing is valid when all inputs lay their elements out identically and densely;
    # then even channels-last tensors need no copy. Otherwise copy to contiguous first.
    if not (_dense(x) and all(t.stride() == x.stride() for t in given)):
        x, denoised = x.contiguous(), denoised.contiguous()
        noise = noise.contiguous() if noise is not None else None
        prev = prev.contiguous() if prev is not None else None
    out = torch.empty_like(x)  # keeps x's strides for dense x, so out lines up with the inputs
    n = x.numel()
    if n == 0:
        return out
    # Triton launches on the current CUDA device; make it x's device (a no-op on one GPU).
    device = torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()
    with device:
        _sampler_update_kernel[(triton.cdiv(n, BLOCK),)](
            x,
            denoised,
            noise if noise is not None else x,  # never read: HAS_NOISE is False
            prev if prev is not None else x,  # never read: HAS_PREV is False
            out,
            n,
            float(a),
            float(b),
            float(c),
            float(d),
            HAS_NOISE=noise is not None,
            HAS_PREV=prev is not None,
            BLOCK=BLOCK,
        )
    return out
