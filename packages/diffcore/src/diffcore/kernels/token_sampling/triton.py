"""Masked-token sampling as one Triton pass over each row of logits (imports triton: load it
lazily).

One program per row walks the vocabulary in blocks and keeps, per lane, a running maximum and
rescaled sum of exp(logit / T) (the online logsumexp of Milakov & Gimelshein 2018,
https://arxiv.org/abs/1805.02867) and the best Gumbel-perturbed score with its token id and
tempered logit. At the end the lanes are merged: token = argmax of ``logit / T + Gumbel(u)``
(first occurrence on ties, like ``torch.argmax``), confidence = ``exp(logit_token / T - lse)``.
No probability vector is ever written: per row it reads V logits and V uniforms and writes one
token id and one confidence.

Arithmetic is in the precision of the noise: float64 uniforms (the default drawn by the
dispatching op) get float64 Gumbel noise and sums, as in the reference; float32 uniforms are
faster but their Gumbel tail is cut at about -log(2**-24) = 16.6.

Top-p is not fused: the nucleus needs the probabilities in sorted order, so it is found in
PyTorch by the reference's own :func:`~diffcore.kernels.token_sampling.reference.nucleus` (one
sort per row; the same tokens as the reference, ties included), tokens outside it are set to
-inf, and the kernel samples the filtered logits.
"""

from __future__ import annotations

import contextlib
import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from diffcore.kernels._interpreter import fix_loop_bounds
from diffcore.kernels.token_sampling import reference

MAX_BLOCK = 1024  # vocabulary entries per iteration: 8 per thread with the default 4 warps

fix_loop_bounds()  # the kernels below loop over runtime bounds


@triton.jit
def _sample_tokens_kernel(
    logits_ptr,
    noise_ptr,
    tokens_ptr,
    confidence_ptr,
    vocab,
    logits_stride,
    noise_stride,
    temperature,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    logits_row = logits_ptr + row * logits_stride
    noise_row = noise_ptr + row * noise_stride
    lanes = tl.arange(0, BLOCK)
    compute = noise_ptr.dtype.element_ty  # float32 or float64

    top = tl.full((BLOCK,), float("-inf"), compute)  # running max of logit / T
    total = tl.zeros((BLOCK,), compute)  # running sum of exp(logit / T - top)
    best = tl.full((BLOCK,), float("-inf"), compute)  # best perturbed score seen by the lane
    best_tempered = tl.full((BLOCK,), float("-inf"), compute)
    best_token = tl.zeros((BLOCK,), tl.int32)
    for start in range(0, vocab, BLOCK):
        token = start + lanes
        inside = token < vocab
        logit = tl.load(logits_row + token, mask=inside, other=float("-inf"))
        tempered = logit.to(tl.float32).to(compute) / temperature  # via fp32: exact, and
        # avoids a direct bf16 -> fp64 conversion, which not every Triton backend lowers
        u = tl.load(noise_row + token, mask=inside, other=0.5).to(compute)
        score = tempered - tl.log(-tl.log(u))  # -inf for masked-out or filtered tokens
        better = score > best  # strict: a lane keeps its first maximum, as argmax does
        best = tl.where(better, score, best)
        best_tempered = tl.where(better, tempered, best_tempered)
        best_token = tl.where(better, token, best_token)
        new_top = tl.maximum(top, tempered)
        # A lane that has seen only -inf keeps a zero sum (exp(-inf - -inf) would be nan).
        seen = new_top > float("-inf")
        rescaled = total * tl.exp(top - new_top) + tl.exp(tempered - new_top)
        total = tl.where(seen, rescaled, 0.0)
        top = new_top

    winner = tl.max(best, axis=0)
    # The leftmost maximum; a row of -inf scores gives token 0, as torch.argmax does.
    token = tl.min(tl.where(best == winner, best_token, vocab), axis=0)
    chosen = tl.max(tl.where(best_token == token, best_tempered, float("-inf")), axis=0)
    row_top = tl.max(top, axis=0)
    row_total = tl.sum(tl.where(top > float("-inf"), total * tl.exp(top - row_top), 0.0), axis=0)
    confidence = tl.exp(chosen - row_top - tl.log(row_total))
    tl.store(tokens_ptr + row, token.to(tl.int64))
    tl.store(confidence_ptr + row, confidence.to(confidence_ptr.dtype.element_ty))


def _rows(t: Tensor, vocab: int) -> Tensor:
    """t (..., V) as (N, V) rows with unit stride along V (a view when possible)."""
    if t.stride(-1) != 1:
        t = t.contiguous()
    return t.reshape(-1, vocab)


def sample_tokens(
    logits: Tensor, noise: Tensor, *, temperature: float, top_p: float | None
) -> tuple[Tensor, Tensor]:
    """Triton version of :func:`diffcore.kernels.token_sampling.reference.sample_tokens`.

    Inputs must already be checked (same shape (..., V) with V >= 1, same device; logits
    fp16/bf16/fp32, noise fp32/fp64; temperature > 0).
    """
    if top_p is not None:
        keep = reference.nucleus(reference.tempered_log_probs(logits, temperature), top_p)
        logits = logits.masked_fill(~keep, -math.inf)
    lead, vocab = logits.shape[:-1], logits.shape[-1]
    logits2, noise2 = _rows(logits, vocab), _rows(noise, vocab)
    rows = logits2.shape[0]
    tokens = torch.empty(rows, dtype=torch.long, device=logits.device)
    confidence = torch.empty(rows, dtype=torch.float32, device=logits.device)
    if rows:
        device = torch.cuda.device(logits.device) if logits.is_cuda else contextlib.nullcontext()
        with device:
            _sample_tokens_kernel[(rows,)](
                logits2,
                noise2,
                tokens,
                confidence,
                vocab,
                logits2.stride(0),
                noise2.stride(0),
                float(temperature),
                BLOCK=min(MAX_BLOCK, triton.next_power_of_2(vocab)),
            )
    return tokens.reshape(lead), confidence.reshape(lead)
