"""Condition dropout: the training half of classifier-free guidance."""

from __future__ import annotations

import torch
from torch import Tensor


def drop_condition(
    values: Tensor,
    p: float,
    null: float | int | Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Each row of ``values`` (B, ...) replaced by ``null`` (a scalar, or a tensor that
    broadcasts to a row) with probability ``p``, so that one network learns the conditional and
    the unconditional model that guidance contrasts (Ho & Salimans 2022,
    https://arxiv.org/abs/2207.12598). Class ids take their null id, embeddings 0."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"condition dropout must lie in [0, 1], got {p}")
    if p == 0.0:
        return values
    drop = torch.rand(values.shape[0], generator=generator, device=values.device) < p
    drop = drop.reshape(-1, *[1] * (values.ndim - 1))
    return torch.where(
        drop, torch.as_tensor(null, dtype=values.dtype, device=values.device), values
    )
