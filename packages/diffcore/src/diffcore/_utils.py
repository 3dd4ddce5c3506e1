"""Small helpers shared across diffcore."""

from __future__ import annotations

from torch import Tensor


def per_sample(coef: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample coefficient (B,) to broadcast against x (B, ...), in x's dtype/device."""
    return coef.reshape(-1, *([1] * (x.ndim - 1))).to(device=x.device, dtype=x.dtype)
