"""The sampler update as one Triton pass over memory (imports triton: load it lazily).

The op is memory-bound: per element it reads 2-4 values and writes one, with 2-4 fused
multiply-adds in between, so the kernel's only jobs are to touch each byte once and to keep
the arithmetic in fp32 whatever the storage dtype. The guided form also reads the unconditional
estimate and writes the guided one, replacing a separate lerp pass (read 2, write 1) before it.
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
    uncond_ptr,
    noise_ptr,
    prev_ptr,
    out_ptr,
    denoised_out_ptr,
    n,
    a,
    b,
    c,
    d,
    guidance_scale,
    HAS_NOISE: tl.constexpr,
    HAS_PREV: tl.constexpr,
    GUIDED: tl.constexpr,
    SMALL_SCALE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # int64 offsets: tensors past 2**31 elements (a batch of large latents) must not wrap.
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < n
    denoised = tl.load(denoised_ptr + offsets, mask=inside).to(tl.float32)
    # Absent inputs are compiled out (constexpr flags), so they cost no memory traffic.
    if GUIDED:  # denoised_ptr holds the conditional estimate
        uncond = tl.load(uncond_ptr + offsets, mask=inside).to(tl.float32)
        diff = denoised - uncond
        # torch.lerp's two forms, so the result rounds as the reference's does.
        if SMALL_SCALE:
            denoised = uncond + guidance_scale * diff
        else:
            denoised = denoised - diff * (1.0 - guidance_scale)
        tl.store(denoised_out_ptr + offsets, denoised.to(out_ptr.dtype.element_ty), mask=inside)
    out = a * tl.load(x_ptr + offsets, mask=inside).to(tl.float32)
    out += b * denoised
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


def _launch(
    x: Tensor,
    denoised: Tensor,
    a: float,
    b: float,
    noise: Tensor | None,
    c: float,
    prev: Tensor | None,
    d: float,
    uncond: Tensor | None = None,
    guidance_scale: float = 1.0,
) -> tuple[Tensor, Tensor | None]:
    """Run the kernel; returns (update, guided denoised or None when ``uncond`` is None)."""
    given = [t for t in (denoised, uncond, noise, prev) if t is not None]
    # Flat indexing is valid when all inputs lay their elements out identically and densely;
    # then even channels-last tensors need no copy. Otherwise copy to contiguous first.
    if not (_dense(x) and all(t.stride() == x.stride() for t in given)):
        x, denoised = x.contiguous(), denoised.contiguous()
        uncond = uncond.contiguous() if uncond is not None else None
        noise = noise.contiguous() if noise is not None else None
        prev = prev.contiguous() if prev is not None else None
    out = torch.empty_like(x)  # keeps x's strides for dense x, so out lines up with the inputs
    denoised_out = torch.empty_like(x) if uncond is not None else None
    n = x.numel()
    if n == 0:
        return out, denoised_out
    # Triton launches on the current CUDA device; make it x's device (a no-op on one GPU).
    device = torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()
    with device:
        _sampler_update_kernel[(triton.cdiv(n, BLOCK),)](
            x,
            denoised,
            uncond if uncond is not None else x,  # never read unless GUIDED
            noise if noise is not None else x,  # never read: HAS_NOISE is False
            prev if prev is not None else x,  # never read: HAS_PREV is False
            out,
            denoised_out if denoised_out is not None else out,  # never written unless GUIDED
            n,
            float(a),
            float(b),
            float(c),
            float(d),
            float(guidance_scale),
            HAS_NOISE=noise is not None,
            HAS_PREV=prev is not None,
            GUIDED=uncond is not None,
            SMALL_SCALE=abs(guidance_scale) < 0.5,
            BLOCK=BLOCK,
        )
    return out, denoised_out


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
    return _launch(x, denoised, a, b, noise, c, prev, d)[0]


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
    """Triton version of :func:`diffcore.kernels.sampler_update.reference.guided_sampler_update`:
    one pass reads x, cond, uncond (noise, prev) and writes the update and denoised.

    Inputs must already be checked (same shape, dtype, device; fp16, bf16 or fp32).
    """
    out, denoised = _launch(x, cond, a, b, noise, c, prev, d, uncond, guidance_scale)
    assert denoised is not None  # GUIDED always writes it
    return out, denoised
