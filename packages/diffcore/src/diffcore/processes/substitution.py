"""Substitution "crappification" for tokens: wrong tokens instead of masks.

At severity t in [0, 1] every token of x0 is, independently with probability t, replaced by a
draw from its row of a replacement matrix ``R`` (V, V): uniform over the allowed tokens (uniform
discrete diffusion, D3PM's "uniform" corruption) or, for proteins, a BLOSUM-weighted row that
swaps a residue for a similar one. Unlike a mask, a substituted token does not say it is wrong:
the denoiser must find the errors as well as fix them, which is what lets one model refine any
sequence (its own samples, another generator's, a user's draft).

The network is any ``TokenDenoiser`` ``D(x_t, t, **cond) -> logits (B, L, V)``; it is trained
with the cross-entropy of x0 at every counted position (the "mask" token of its vocabulary is
never drawn nor predicted), and sampled by refinement (``diffcore.samplers.sample_substitute``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from diffcore import seeding
from diffcore._utils import per_sample, stratified_time
from diffcore.processes.mask import clean_log_probs

__all__ = ["SubstitutionProcess", "blosum_replacement", "uniform_replacement"]


def _check_tokens(vocab_size: int, tokens: Sequence[int]) -> list[int]:
    tokens = sorted({int(t) for t in tokens})
    if not tokens or tokens[0] < 0 or tokens[-1] >= vocab_size:
        raise ValueError(f"tokens must be ids in [0, {vocab_size}), got {tokens[:5]}...")
    return tokens


def uniform_replacement(vocab_size: int, tokens: Sequence[int]) -> Tensor:
    """R (V, V) float64: every row uniform over ``tokens`` (the ids a corruption may write)."""
    tokens = _check_tokens(vocab_size, tokens)
    matrix = torch.zeros(vocab_size, vocab_size, dtype=torch.float64)
    matrix[:, tokens] = 1.0 / len(tokens)
    return matrix


def blosum_replacement(
    vocab_size: int, scores: dict[tuple[int, int], float], tokens: Sequence[int]
) -> Tensor:
    """R (V, V) float64 from substitution scores in half-bits (BLOSUM): among ``tokens``, row a
    is proportional to ``2 ** (score(a, b) / 2)`` over b != a (a residue is always swapped for
    another, likelier for a similar one); rows of other ids are uniform over ``tokens``.

    BLOSUM scores are 2 log2(q_ab / (p_a p_b)); with equal background frequencies p this makes
    row a the target frequencies' conditional q(b | a), the self-pair left out."""
    tokens = _check_tokens(vocab_size, tokens)
    matrix = uniform_replacement(vocab_size, tokens)
    for a in tokens:
        row = torch.zeros(vocab_size, dtype=torch.float64)
        for b in tokens:
            if b != a:
                row[b] = 2.0 ** (float(scores[(a, b)]) / 2.0)
        matrix[a] = row / row.sum()
    return matrix


@dataclass(frozen=True, eq=False)
class SubstitutionProcess:
    """Each token replaced with probability t by a draw from ``replacement[token]``.

    replacement: (V, V) rows of probabilities (``uniform_replacement``, ``blosum_replacement``).
    mask_id: the vocabulary's mask token: never written by the corruption, never predicted.
    prior: (V,) where generation starts (each position to generate drawn from it; default: the
    mean row of ``replacement``, the allowed tokens).
    t_min: smallest training severity.
    """

    replacement: Tensor
    mask_id: int
    prior: Tensor | None = field(default=None)
    t_min: float = 0.0

    def __post_init__(self) -> None:
        r = self.replacement
        if not isinstance(r, Tensor) or r.ndim != 2 or r.shape[0] != r.shape[1]:
            raise ValueError("replacement must be a (V, V) tensor of row probabilities")
        if bool((r < 0).any()) or not torch.allclose(
            r.sum(1).double(), torch.ones(len(r)).double()
        ):
            raise ValueError("every row of replacement must be probabilities summing to 1")
        if bool((r[:, self.mask_id] > 0).any()):
            raise ValueError("replacement must never write the mask token")
        prior = r.double().mean(0) if self.prior is None else self.prior.double()
        object.__setattr__(self, "prior", prior / prior.sum())
        if not 0.0 <= self.t_min < 1.0:
            raise ValueError(f"t_min must lie in [0, 1), got {self.t_min}")

    @property
    def vocab_size(self) -> int:
        return self.replacement.shape[0]

    def substitute(self, x: Tensor, where: Tensor, generator: Any = None) -> Tensor:
        """x (B, L) with the positions ``where`` (B, L) bool replaced by draws from their
        rows of ``replacement`` (one uniform per position from ``generator``)."""
        rows = self.replacement.to(x.device)[x]  # (B, L, V)
        u = seeding.rand(x.shape, generator, device=x.device, dtype=torch.float64)
        cdf = rows.cumsum(-1)
        drawn = torch.searchsorted(cdf, (u * cdf[..., -1]).unsqueeze(-1)).squeeze(-1)
        return torch.where(where, drawn.clamp_max(self.vocab_size - 1), x)

    def draw_prior(
        self, shape: Sequence[int], generator: Any = None, device: Any = "cpu"
    ) -> Tensor:
        """Tokens (B, L) drawn independently from ``prior``: where generation starts."""
        u = seeding.rand(shape, generator, device=device, dtype=torch.float64)
        cdf = self.prior.to(device).cumsum(0)
        drawn = torch.searchsorted(cdf, (u * cdf[-1]).contiguous())
        return drawn.clamp_max(self.vocab_size - 1)

    def sample_time(self, batch: int, generator: Any = None, device: Any = "cpu") -> Tensor:
        """Training times (B,) float64 in [t_min, 1], stratified (as ``loss`` draws them)."""
        return stratified_time(batch, generator, device, self.t_min, 1.0)

    def corrupt(
        self, x0: Tensor, t: Tensor, generator: Any = None, *, counted: Tensor | None = None
    ) -> Tensor:
        """x_t: each token of x0 (B, L) substituted with probability t (B,); positions outside
        ``counted`` (padding, prompts) are left alone."""
        u = seeding.rand(x0.shape, generator, device=x0.device, dtype=torch.float64)
        where = u < per_sample(t.double().to(x0.device), u)
        if counted is not None:
            where &= counted
        return self.substitute(x0, where, generator)

    def loss(
        self,
        denoiser: Any,
        x0: Tensor,
        generator: torch.Generator | None = None,
        *,
        loss_mask: Tensor | None = None,
        **cond: Any,
    ) -> Tensor:
        """Mean cross-entropy (nats per counted token) of x0 under ``denoiser(x_t, t, **cond)``
        at every counted position (``loss_mask``, default all): substituted tokens must be
        fixed and kept ones recognised as right."""
        counted = torch.ones_like(x0, dtype=torch.bool) if loss_mask is None else loss_mask.bool()
        t = self.sample_time(x0.shape[0], generator, x0.device)
        xt = self.corrupt(x0, t, generator, counted=counted)
        log_probs = clean_log_probs(denoiser(xt, t.float(), **cond), self.mask_id)
        nll = -log_probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
        return torch.where(counted, nll, 0.0).sum() / counted.sum().clamp_min(1)
