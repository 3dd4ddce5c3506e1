"""Custom attention patterns for ``transformers`` models (block diffusion's block-causal masks)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["attention_mask_for"]


def attention_mask_for(model: nn.Module, allowed: Tensor) -> Tensor:
    """A (B, 1, Q, K) 4-D attention mask from a bool pattern ``allowed`` (B, Q, K) or (Q, K),
    in the form ``model``'s attention code reads it: bool for SDPA and flex attention, additive
    (0, or the dtype's minimum where not allowed) for eager attention.

    ``model`` may be a wrapper (DDP, compiled, a training loop's module): the first submodule
    with a ``config`` says which attention it runs."""
    if allowed.dtype != torch.bool or allowed.ndim not in (2, 3):
        raise ValueError(
            f"allowed must be a (Q, K) or (B, Q, K) bool pattern, got {allowed.dtype} "
            f"{tuple(allowed.shape)}"
        )
    allowed = allowed if allowed.ndim == 3 else allowed[None]
    config = next((m.config for m in model.modules() if hasattr(m, "config")), None)
    if getattr(config, "_attn_implementation", "sdpa") != "eager":
        return allowed[:, None]
    dtype = next(model.parameters()).dtype
    additive = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return additive.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]
