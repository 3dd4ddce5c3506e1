"""The sampler update, specified in plain PyTorch."""

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
    """``a * x + b * denoised + c * noise + d * prev``, computed in fp32 (fp64 stays fp64),
    returned in x's dtype."""
    work = torch.promote_types(x.dtype, torch.float32)
    out = x.to(work) * a + denoised.to(work) * b
    if noise is not None:
        out.add_(noise.to(work), alpha=c)
    if prev is not None:
        out.add_(prev.to(work), alpha=d)
    return out.to(x.dtype)
