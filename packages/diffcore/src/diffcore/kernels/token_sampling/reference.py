"""Masked-token sampling, specified in plain PyTorch (the spec and the CPU path).

Everything is computed in float64: low-precision Gumbel noise truncates its tail and silently
lowers the temperature (Zheng et al. 2024, https://arxiv.org/abs/2409.02908).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def tempered_log_probs(logits: Tensor, temperature: float) -> Tensor:
    """log softmax(logits / temperature) in float64: (..., V) -> (..., V)."""
    return torch.log_softmax(logits.double() / temperature, dim=-1)


def nucleus(logp: Tensor, top_p: float) -> Tensor:
    """Which tokens (..., V) bool the nucleus keeps: the smallest set of most likely tokens whose
    mass reaches top_p (Holtzman et al. 2020, https://arxiv.org/abs/1904.09751). The most likely
    token always stays. logp: (..., V) normalized log-probabilities."""
    ranked, order = logp.sort(-1, descending=True)
    p = ranked.exp()
    mass_before = p.cumsum(-1) - p
    return torch.empty_like(logp, dtype=torch.bool).scatter_(-1, order, mass_before < top_p)


def sample_tokens(
    logits: Tensor, noise: Tensor, *, temperature: float, top_p: float | None
) -> tuple[Tensor, Tensor]:
    """Gumbel-max draw from softmax(logits / temperature), restricted to the top_p nucleus.

    logits: (..., V); noise: (..., V) uniforms in [0, 1); temperature > 0.
    Returns tokens (...,) int64 and their confidence (...,): the chosen token's probability
    under the tempered, nucleus-filtered (renormalized) distribution, float32 (float64 for
    float64 logits). Ties go to the lowest token id.
    """
    logp = tempered_log_probs(logits, temperature)
    if top_p is not None:
        logp = logp.masked_fill(~nucleus(logp, top_p), -math.inf)
    gumbel = -torch.log(-torch.log(noise.double()))
    tokens = (logp + gumbel).argmax(-1)
    chosen = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    confidence = (chosen - logp.logsumexp(-1)).exp()  # renormalized over the nucleus
    return tokens, confidence.to(torch.promote_types(logits.dtype, torch.float32))
