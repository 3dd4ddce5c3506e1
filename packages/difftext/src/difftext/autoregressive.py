"""The autoregressive peer: a GPT-2-style causal LM of the diffusion model's size, trained on the
same blocks by the same loop. It is the likelihood baseline and the judge of generated text.

Every block is scored whole, like the diffusion model scores it: the model reads a start token
(BOS) and then the block, so its first token is predicted from nothing rather than skipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffcore.kernels import sample_tokens
from diffcore.seeding import Generator, rand

__all__ = ["causal_inputs", "causal_lm_loss", "causal_token_nll", "sample_causal"]


def causal_inputs(tokens: Tensor, start: int) -> Tensor:
    """Inputs (B, L) for targets ``tokens`` (B, L): the start token, then tokens shifted right."""
    first = torch.full_like(tokens[:, :1], start)
    return torch.cat([first, tokens[:, :-1]], dim=1)


def causal_token_nll(model: nn.Module, tokens: Tensor, *, start: int, pad_id: int) -> Tensor:
    """-log p(token | tokens before it) (B, L) float32 in nats; 0 at padding. Padding only ever
    follows text, so causal attention alone keeps it from every scored token; the attention mask
    is passed anyway (only when there is padding: it slows attention down)."""
    inputs = causal_inputs(tokens, start)
    padded = inputs == pad_id
    attention = (~padded).long() if bool(padded.any()) else None
    logits = model(input_ids=inputs, attention_mask=attention).logits.float()
    nll = F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none")
    return nll.masked_fill(tokens == pad_id, 0.0)


def causal_lm_loss(model: nn.Module, tokens: Tensor, *, start: int, pad_id: int) -> Tensor:
    """Mean negative log-likelihood per real token (nats): the peer's training loss."""
    counted = tokens != pad_id
    return causal_token_nll(
        model, tokens, start=start, pad_id=pad_id
    ).sum() / counted.sum().clamp_min(1)


@torch.no_grad()
def sample_causal(
    model: nn.Module,
    prefix: Tensor,
    length: int,
    *,
    start: int,
    banned: Sequence[int] = (),
    temperature: float = 1.0,
    top_p: float | None = None,
    generator: Generator = None,
) -> Tensor:
    """Ancestral sampling, one token per forward pass with a key-value cache.

    prefix: (B, P) long, the prompt (P may be 0); returns (B, length) long: the prefix followed by
    length - P drawn tokens. Gumbel-max in float64 from ``generator`` (reproducible); ``banned``
    tokens are never drawn; temperature 0 takes the argmax.
    """
    if prefix.ndim != 2 or prefix.shape[1] > length:
        raise ValueError(
            f"prefix must be (B, P) with P <= length {length}, got shape {tuple(prefix.shape)}"
        )
    if not temperature >= 0.0:
        raise ValueError(f"temperature must be >= 0 (0 = argmax), got {temperature}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
    first = torch.full((prefix.shape[0], 1), start, dtype=torch.long, device=prefix.device)
    out = torch.cat([first, prefix.long()], 1)
    step_input, cache = out, None
    ban = torch.tensor(list(banned), dtype=torch.long, device=prefix.device)
    while out.shape[1] < length + 1:
        result = model(input_ids=step_input, cache=cache, use_cache=True)  # transformers 5 API
        cache = result.cache
        logits = result.logits[:, -1].double().index_fill(-1, ban, -math.inf)
        token = _draw(logits, temperature, top_p, generator)
        out = torch.cat([out, token[:, None]], 1)
        step_input = token[:, None]
    return out[:, 1:]


def _draw(logits: Tensor, temperature: float, top_p: float | None, generator: Generator) -> Tensor:
    """One token per row of logits (B, V) float64: diffcore's token draw (Gumbel-max under
    temperature and nucleus), each row's noise from its own generator when given per sample."""
    noise = None
    if temperature != 0.0:
        noise = rand(logits.shape, generator, device=logits.device, dtype=torch.float64)
    return sample_tokens(logits, temperature=temperature, top_p=top_p, noise=noise)[0]
