"""GroupNorm + modulation + SiLU as one Triton kernel (imports triton: load it lazily).

One program per (sample, group). It reads the group twice and writes it once:
1. statistics: mean and (biased) variance over the group's C/G channels x S positions, by
   Welford's update per lane and Chan et al.'s merge across lanes;
2. output: GroupNorm's affine weight/bias, the per-sample ``(1 + scale)`` / ``shift`` and the
   normalisation fold into one per-channel ``y = (x - mean) * alpha + beta``, then
   ``y * sigmoid(y)``.
The unfused sequence (group_norm, mul, add, silu) reads and writes the whole tensor four times.
Everything is computed in fp32; the result is rounded to x's dtype once.

The group is walked as a flat index over its (channel, position) pairs in memory order, so
NCHW (positions innermost) and channels-last (channels innermost) tensors are both read
without a copy; any other layout is copied to contiguous first.
"""

from __future__ import annotations

import contextlib
import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from diffcore.kernels._interpreter import fix_loop_bounds

BLOCK = 1024  # elements per iteration: 8 per thread with the default 4 warps

fix_loop_bounds()  # the kernels below loop over runtime bounds


@triton.jit
def _group_norm_silu_kernel(
    x_ptr,
    out_ptr,
    weight_ptr,
    bias_ptr,
    scale_ptr,
    shift_ptr,
    groups,
    channels_per_group,
    positions,
    group_size,
    x_stride_n,
    x_stride_c,
    x_stride_s,
    out_stride_n,
    out_stride_c,
    out_stride_s,
    mod_stride_n,
    mod_stride_c,
    shift_stride_n,
    shift_stride_c,
    eps,
    CHANNELS_INNERMOST: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_MODULATION: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    n = pid // groups
    first_channel = (pid % groups) * channels_per_group
    x_row = x_ptr + n.to(tl.int64) * x_stride_n
    out_row = out_ptr + n.to(tl.int64) * out_stride_n
    lanes = tl.arange(0, BLOCK)

    # Welford per lane, then the lanes' (count, mean, M2) are merged (Chan et al. 1979): each
    # partial sum is centred on its own mean, so a large offset cannot cancel the variance away
    # the way E[x^2] - E[x]^2 would in fp32.
    count = tl.zeros((BLOCK,), dtype=tl.float32)
    mean = tl.zeros((BLOCK,), dtype=tl.float32)
    m2 = tl.zeros((BLOCK,), dtype=tl.float32)
    for start in range(0, group_size, BLOCK):
        i = start + lanes
        inside = i < group_size
        if CHANNELS_INNERMOST:
            c, s = i % channels_per_group, i // channels_per_group
        else:
            c, s = i // positions, i % positions
        offset = (first_channel + c).to(tl.int64) * x_stride_c + s.to(tl.int64) * x_stride_s
        v = tl.load(x_row + offset, mask=inside, other=0.0).to(tl.float32)
        count += inside.to(tl.float32)
        delta = tl.where(inside, v - mean, 0.0)
        mean += delta / tl.maximum(count, 1.0)
        m2 += delta * (v - mean)
    total = tl.sum(count, axis=0)
    group_mean = tl.sum(count * mean, axis=0) / total
    spread = mean - group_mean
    variance = (tl.sum(m2, axis=0) + tl.sum(count * spread * spread, axis=0)) / total
    rstd = 1.0 / tl.sqrt(variance + eps)  # biased variance, as torch's group_norm

    for start in range(0, group_size, BLOCK):
        i = start + lanes
        inside = i < group_size
        if CHANNELS_INNERMOST:
            c, s = i % channels_per_group, i // channels_per_group
        else:
            c, s = i // positions, i % positions
        channel = first_channel + c
        offset = channel.to(tl.int64) * x_stride_c + s.to(tl.int64) * x_stride_s
        v = tl.load(x_row + offset, mask=inside, other=0.0).to(tl.float32)
        # Per-channel parameters are gathered per element; they stay in cache (C/G distinct).
        # Normalisation, affine and modulation fold into y = (v - mean) * alpha + beta; the
        # mean is subtracted first so a large common offset cancels exactly, not after rounding.
        alpha = tl.full((BLOCK,), 1.0, tl.float32) * rstd
        if HAS_WEIGHT:
            alpha *= tl.load(weight_ptr + channel, mask=inside, other=1.0).to(tl.float32)
        beta = tl.zeros((BLOCK,), tl.float32)
        if HAS_BIAS:
            beta += tl.load(bias_ptr + channel, mask=inside, other=0.0).to(tl.float32)
        if HAS_MODULATION:
            mod = n.to(tl.int64) * mod_stride_n + channel * mod_stride_c
            gain = 1.0 + tl.load(scale_ptr + mod, mask=inside, other=0.0).to(tl.float32)
            sh = n.to(tl.int64) * shift_stride_n + channel * shift_stride_c
            alpha *= gain
            beta = beta * gain + tl.load(shift_ptr + sh, mask=inside, other=0.0).to(tl.float32)
        y = (v - group_mean) * alpha + beta
        y = y * tl.sigmoid(y)
        out_offset = channel.to(tl.int64) * out_stride_c + s.to(tl.int64) * out_stride_s
        tl.store(out_row + out_offset, y.to(out_ptr.dtype.element_ty), mask=inside)


def _flat_spatial(t: Tensor) -> Tensor | None:
    """t (N, C, *) as an (N, C, S) view, or None when its spatial dims cannot share one stride."""
    try:
        return t.view(t.shape[0], t.shape[1], math.prod(t.shape[2:]))
    except RuntimeError:
        return None


def group_norm_silu(
    x: Tensor,
    groups: int,
    weight: Tensor | None,
    bias: Tensor | None,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Triton version of :func:`diffcore.kernels.group_norm_silu.reference.group_norm_silu`.

    Inputs must already be checked (x: (N, C, *) fp16/bf16/fp32; weight, bias: (C,);
    scale, shift: (N, C), any strides). Forward only: no autograd graph is recorded.
    """
    out = torch.empty_like(x)  # keeps a dense x's layout (channels-last stays channels-last)
    if x.numel() == 0:
        return out
    x3 = _flat_spatial(x)
    if x3 is None:
        x = x.contiguous()
        x3 = _flat_spatial(x)
    out3 = _flat_spatial(out)
    if out3 is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        out3 = _flat_spatial(out)
    n, channels, positions = x3.shape
    if weight is not None:
        weight = weight.contiguous()
    if bias is not None:
        bias = bias.contiguous()
    has_modulation = scale is not None and shift is not None
    mod = scale if has_modulation else x3  # placeholders are never read (constexpr flags)
    sh = shift if has_modulation else x3
    # Walk channels innermost when that is how x is laid out (channels-last), else positions.
    channels_innermost = x3.stride(1) == 1 and positions > 1 and channels > 1
    device = torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()
    with device:
        _group_norm_silu_kernel[(n * groups,)](
            x3,
            out3,
            weight if weight is not None else x3,
            bias if bias is not None else x3,
            mod,
            sh,
            groups,
            channels // groups,
            positions,
            channels // groups * positions,  # values per group
            *x3.stride(),
            *out3.stride(),
            *mod.stride()[:2],
            *sh.stride()[:2],
            float(eps),
            CHANNELS_INNERMOST=channels_innermost,
            HAS_WEIGHT=weight is not None,
            HAS_BIAS=bias is not None,
            HAS_MODULATION=has_modulation,
            BLOCK=BLOCK,
        )
    return out
