"""The two protocols that join every domain to the engine.

A *denoiser* is any callable that, given a noised sample and its noise level, returns an
estimate of the clean sample (k-diffusion's shape). Samplers only ever see these.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor


class Denoiser(Protocol):
    """Continuous denoiser: ``D(x, sigma, **cond) -> x0 estimate``.

    x: (B, ...) noised sample in variance-exploding coordinates, ``x = x0 + sigma * eps``.
    sigma: (B,) noise level of each sample (float, same device as ``x``).
    Returns a tensor shaped like ``x``: the estimate of ``E[x0 | x]``.
    """

    def __call__(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor: ...


class TokenDenoiser(Protocol):
    """Discrete denoiser for absorbing-state (mask) diffusion: ``D(x, t, **cond) -> logits``.

    x: (B, L) long tokens, where masked positions hold the process's ``mask_id``.
    t: (B,) diffusion time in [0, 1] (1 = everything masked).
    Returns (B, L, V) logits over the clean token at every position; the mask token itself
    must never be predicted (samplers set its logit to -inf).
    """

    def __call__(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor: ...
