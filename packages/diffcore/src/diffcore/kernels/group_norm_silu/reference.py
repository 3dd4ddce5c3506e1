"""GroupNorm + modulation + SiLU, specified in plain PyTorch (the spec, the CPU path and the
training path: it is differentiable)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def group_norm_silu(
    x: Tensor,
    groups: int,
    weight: Tensor | None,
    bias: Tensor | None,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """``SiLU((1 + scale) * GroupNorm(x) + shift)``: normalise, then modulate, then activate.

    x: (N, C, *); weight, bias: (C,) or None; scale, shift: (N, C) or both None.
    """
    h = F.group_norm(x, groups, weight, bias, eps)
    if scale is not None and shift is not None:
        trailing = (None,) * (x.ndim - 2)  # (N, C) -> (N, C, 1, ..., 1) against x's spatial dims
        h = h * (1 + scale[(..., *trailing)]) + shift[(..., *trailing)]
    return F.silu(h)
