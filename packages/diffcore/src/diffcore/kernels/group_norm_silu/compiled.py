"""GroupNorm + modulation + SiLU through ``torch.compile``: inductor fuses the reference's
normalisation, modulation and activation into one pass per group (the CPU fused path)."""

from __future__ import annotations

from torch import Tensor

from diffcore.kernels._dispatch import compiled
from diffcore.kernels.group_norm_silu import reference


def group_norm_silu(
    x: Tensor,
    groups: int,
    weight: Tensor | None,
    bias: Tensor | None,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """The reference, compiled (one compile per groups / eps pair: they are constants)."""
    return compiled(reference.group_norm_silu)(x, groups, weight, bias, scale, shift, eps)
