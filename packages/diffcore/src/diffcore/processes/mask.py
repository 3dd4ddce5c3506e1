"""Absorbing-state (masking) diffusion for tokens: MDLM's continuous-time process.

Time t in [0, 1] *is* the masking probability: every token of x0 is replaced by ``mask_id``
independently with probability t (MDLM, Sahoo et al. 2024, https://arxiv.org/abs/2406.07524,
with the linear schedule alpha_t = 1 - t). Any other schedule is a change of time variable, under
which the continuous-time ELBO is invariant; schedules therefore only decide which times training
visits and where a sampler's grid puts its steps (``linear_mask_grid``, ``cosine_mask_grid``).

The denoiser predicts the clean token at every position with MDLM's "SUBS" parameterization: the
mask token is never a prediction (its logit is set to -inf) and visible tokens are carried over,
so they carry no loss. The negative ELBO per sequence is then

    NELBO(x0) = int_0^1 (1/t) E_{x_t ~ q(. | x0)} [ sum_{l : x_t^l = mask} -log p(x0^l | x_t) ] dt,

which equals the any-order autoregressive loss (Ou et al. 2024, https://arxiv.org/abs/2406.03736):
for a denoiser that returns the exact conditionals it is exactly -log p(x0), so the bound is tight.

Block diffusion (BD3-LM, Arriola et al. 2025, https://arxiv.org/abs/2503.09573) splits the
sequence into blocks of ``block`` tokens, autoregressive across blocks and diffusion within
each: -log p(x0) = sum_b -log p(x0^b | x0^{<b}) <= sum_b NELBO_b, each block masked on its own
given the clean blocks before it. Its bound lies between the autoregressive likelihood
(``block`` = 1, where it is exact) and the full-sequence NELBO (``block`` = L). The denoiser
then gets the clean sequence as ``context=x0`` and must predict block b from x_t's block b and
context's blocks before b only (``block_attention_mask`` is that pattern for a transformer), so
every block is scored in one call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from diffcore._utils import per_sample, stratified_time

__all__ = [
    "MaskProcess",
    "block_attention_mask",
    "clean_log_probs",
    "cosine_mask_grid",
    "linear_mask_grid",
]


def _repeat_rows(value: Any, times: int) -> Any:
    """A conditioning value for ``times`` copies of the batch: tensors repeat along rows."""
    if isinstance(value, Tensor) and value.ndim >= 1:
        return value.repeat(times, *([1] * (value.ndim - 1)))
    return value


def _check_steps(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"a grid needs a positive integer number of steps, got {n!r}")


def linear_mask_grid(n: int) -> Tensor:
    """Times t_i = 1 - i/n, i = 0..n: (n + 1,) float64 on the CPU, from 1 down to 0.

    With t the masking probability, every step reveals the same expected number of tokens
    (LLaDA's schedule: the same count committed per step)."""
    _check_steps(n)
    return torch.arange(n, -1, -1, dtype=torch.float64) / n


def cosine_mask_grid(n: int) -> Tensor:
    """Times t_i = cos(pi/2 * i/n), i = 0..n: (n + 1,) float64 on the CPU, from 1 down to 0.

    MaskGIT's schedule (Chang et al. 2022, https://arxiv.org/abs/2202.04200): few tokens are
    revealed in the first steps and many in the last. Early tokens are drawn with almost no
    context, where tokens revealed together (sampled independently) conflict most; late tokens
    are nearly determined by their neighbours, so revealing many at once costs little."""
    _check_steps(n)
    t = torch.cos(0.5 * math.pi * torch.arange(n + 1, dtype=torch.float64) / n)
    t[-1] = 0.0  # cos(pi/2) is 6e-17 in floating point; the grid must end exactly at 0
    return t


def clean_log_probs(logits: Tensor, mask_id: int) -> Tensor:
    """Log-probabilities (..., V) float32 over clean tokens: the mask token's logit is set to -inf
    before the softmax, since a clean token is never the mask (SUBS parameterization)."""
    if not 0 <= mask_id < logits.shape[-1]:
        raise ValueError(
            f"mask_id {mask_id} is not a valid index into the logits' last dimension of size "
            f"{logits.shape[-1]}: the mask token must be part of the vocabulary"
        )
    logits = logits.float().index_fill(-1, torch.tensor([mask_id], device=logits.device), -math.inf)
    return torch.log_softmax(logits, dim=-1)


def block_attention_mask(
    length: int, block: int, *, context: bool = False, device: Any = "cpu"
) -> Tensor:
    """Which keys each query may attend to in a block-diffusion transformer: (Q, K) bool.

    context=False: ``length`` positions, a query in block b sees blocks <= b (block-causal), the
    pattern at sampling time, where the blocks before the one being generated are clean.
    context=True: 2 * ``length`` positions, x_t then the clean x0 (BD3-LM's training layout):
    x_t's block b sees x_t's block b and x0's blocks < b; x0's block b sees x0's blocks <= b.
    Both copies take positions 0..length-1. Each block's predictions are then the same in both
    layouts whenever the blocks before it are clean."""
    if not isinstance(block, int) or block < 1:
        raise ValueError(f"block must be a positive integer, got {block!r}")
    ids = torch.arange(length, device=device) // block
    same, before = ids[:, None] == ids[None, :], ids[:, None] > ids[None, :]
    if not context:
        return same | before
    top = torch.cat([same, before], 1)
    bottom = torch.cat([torch.zeros_like(same), same | before], 1)
    return torch.cat([top, bottom], 0)


def generated_blocks_end(masked: Tensor, block: int) -> int:
    """How many leading positions a block-by-block sampler still needs: up to the end of the
    latest block, over the rows of ``masked`` (B, L) bool, that holds a row's first masked
    position (a row with none counts as 0). Under block-causal attention the logits there do not
    depend on later positions, so a network call may leave those out."""
    length = masked.shape[1]
    first = torch.where(masked.any(1), masked.float().argmax(1), 0)
    return min(length, (int(first.max()) // block + 1) * block)


@dataclass(frozen=True)
class MaskProcess:
    """Absorbing-state diffusion over a vocabulary of ``vocab_size`` tokens, one of which is
    ``mask_id`` (the absorbing state). The denoiser is a ``TokenDenoiser``:
    ``D(x_t, t, **cond) -> logits (B, L, vocab_size)`` with t (B,) float32.

    estimator: how ``loss`` draws its Monte-Carlo estimate of the ELBO.
    "count" (the default): each row masks exactly k of its n tokens, k uniform on 1..n
    (stratified over the batch), and its masked tokens cost ``-log p / k``: the count form of
    ``nll_bound``, unbiased for the ELBO over all of (0, 1] for a denoiser that ignores t, with
    no 1/t weight to blow up the variance. "time": MDLM's form, a time t per row, each token
    masked with probability t and weighted by 1/t; its variance grows like 1/t near 0, so times
    are drawn in [t_min, 1] (MDLM uses 1e-3); use it for a denoiser that reads t.
    "complementary": the count form twice per row, antithetically: once with its k masked
    tokens and once with the other n - k (all n when k = n), so every token of the row is
    scored exactly once per pair. The denoiser sees 2B rows for a batch of B: halve the batch
    to keep the compute per step. Each half is uniform on patterns of 1..n masked tokens, so
    the mean stays unbiased, and the two halves' errors partly cancel.
    ``nll_bound`` always covers all of (0, 1].

    block: block diffusion (see the module docstring): every block of ``block`` tokens is masked
    on its own (the count forms, per block) and the denoiser is called with ``context=x0``.
    None: the whole sequence is one block (MDLM).

    mask_range: (lo, hi), train only on masked shares in [lo, hi] (the count forms: k of n
    tokens with k / n in it; "time": t in it): an expert for that part of the generation,
    composed with the experts of the other ranges by ``diffcore.generation.tokens.mask_experts``
    (experts per noise level, eDiff-I, for tokens). Its loss is the ELBO's integrand averaged
    over that range only. ``nll_bound`` still covers all of (0, 1].
    """

    mask_id: int
    vocab_size: int
    t_min: float = 1e-3
    estimator: str = "count"
    block: int | None = None
    mask_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if not isinstance(self.vocab_size, int) or self.vocab_size < 2:
            raise ValueError(
                "vocab_size must be an integer >= 2 (tokens plus the mask), "
                f"got {self.vocab_size!r}"
            )
        if not isinstance(self.mask_id, int) or not 0 <= self.mask_id < self.vocab_size:
            raise ValueError(
                f"mask_id must be a token index in [0, {self.vocab_size}), got {self.mask_id!r}"
            )
        if not 0.0 <= self.t_min < 1.0:
            raise ValueError(f"t_min must lie in [0, 1), got {self.t_min}")
        if self.estimator not in ("count", "time", "complementary"):
            raise ValueError(
                f"estimator must be 'count', 'time' or 'complementary', got {self.estimator!r}"
            )
        lo, hi = self.mask_range
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"mask_range must satisfy 0 <= lo < hi <= 1, got {self.mask_range}")
        if self.estimator == "time" and hi <= self.t_min:
            raise ValueError(f"mask_range {self.mask_range} lies below t_min {self.t_min}")
        if self.estimator == "complementary" and self.partial:
            raise ValueError(
                "the complementary estimator pairs k masked tokens with n - k, which leave a "
                "mask_range: use the 'count' estimator for an expert"
            )
        if self.block is not None:
            if not isinstance(self.block, int) or isinstance(self.block, bool) or self.block < 1:
                raise ValueError(f"block must be a positive integer or None, got {self.block!r}")
            if self.estimator == "time":
                raise ValueError(
                    "block diffusion masks each block on its own: use the 'count' or "
                    "'complementary' estimator"
                )

    @property
    def partial(self) -> bool:
        """Whether the process trains on part of the masked shares only (an expert)."""
        return tuple(self.mask_range) != (0.0, 1.0)

    def corrupt(self, x0: Tensor, t: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Mask each token of x0 (B, ...) long independently with probability t (B,) in [0, 1].

        Returns x_t shaped like x0: ``mask_id`` where masked, x0 elsewhere."""
        self._check_tokens(x0, "x0")
        if t.shape != (x0.shape[0],):
            raise ValueError(
                f"t must have shape ({x0.shape[0]},) (one time per row of x0), got {tuple(t.shape)}"
            )
        u = torch.rand(x0.shape, generator=generator, device=x0.device, dtype=torch.float64)
        return torch.where(u < per_sample(t.double(), u), self.mask_id, x0)

    def sample_time(
        self, batch: int, generator: torch.Generator | None = None, device: Any = "cpu"
    ) -> Tensor:
        """Training times (B,) float64 in [t_min, 1] (within ``mask_range``): one per stratum of
        the interval (a shared random offset, shuffled), MDLM's low-discrepancy sampler (Kingma
        et al. 2021)."""
        lo, hi = self.mask_range
        return stratified_time(batch, generator, device, max(self.t_min, lo), hi)

    def loss(
        self,
        denoiser: Any,
        x0: Tensor,
        generator: torch.Generator | None = None,
        *,
        loss_mask: Tensor | None = None,
        **cond: Any,
    ) -> Tensor:
        """The continuous-time negative ELBO, a scalar in nats per counted token, for a batch
        x0 (B, L), estimated as ``estimator`` says (see the class).

        loss_mask: (B, L) bool, True where a token counts. Positions outside it (padding, or a
        prompt to condition on as in LLaDA's fine-tuning) are never masked and carry no loss.
        ``cond`` is passed to the denoiser. The "time" estimate is unbiased for the ELBO
        restricted to t >= t_min; the "count" and "complementary" estimates, for a denoiser that
        ignores t, for the whole ELBO (a time-conditioned denoiser is called with t = k / n).
        """
        counted = self._counted(x0, loss_mask)
        if self.estimator in ("count", "complementary"):
            groups = self._to_groups(counted)  # (G, S): rows, or the rows' blocks
            n = groups.sum(1)
            u = stratified_time(len(groups), generator, x0.device, 0.0, 1.0)
            # uniform on 1..n (0 for a group with nothing counted: nothing masked, no weight),
            # or on the counts whose share lies in mask_range
            first, last = self._count_range(n)
            span = last - first + 1
            k = (first + (u * span).floor().long().minimum(span - 1)).clamp_min(0)
            masked, ks, shape = [self._mask_exactly(groups, k, generator)], [k], x0.shape
            if self.estimator == "complementary":
                # n - k is uniform on 0..n-1; mapping 0 to n (mask all) makes it 1..n again
                everything = (k == n)[:, None]
                masked.append(torch.where(everything, groups, groups & ~masked[0]))
                ks.append(torch.where(k == n, n, n - k))
                x0, counted = x0.repeat(2, 1), counted.repeat(2, 1)
                cond = {key: _repeat_rows(value, 2) for key, value in cond.items()}
            weight = torch.cat(
                [self._weights(m, n, k, shape) for m, k in zip(masked, ks, strict=True)]
            )
            chosen = weight > 0
            t = (chosen.sum(1) / counted.sum(1).clamp_min(1)).float()
            nll = self._masked_nll(denoiser, x0, chosen, t, self._with_context(cond, x0))
            return (nll * weight).sum() / counted.sum().clamp_min(1)
        t = self.sample_time(x0.shape[0], generator, x0.device)
        xt = torch.where(counted, self.corrupt(x0, t, generator), x0)
        nll = self._token_nll(denoiser(xt, t.float(), **cond), x0)
        # t >= t_min; the clamp only guards t_min = 0, where a zero time would give 0/0 (NaN grads)
        masked = (xt == self.mask_id) & counted
        term = torch.where(masked, nll / per_sample(t.clamp_min(1e-6), nll), 0.0)
        return term.sum() / counted.sum().clamp_min(1)

    @torch.no_grad()
    def nll_bound(
        self,
        denoiser: Any,
        x0: Tensor,
        *,
        generator: torch.Generator | None = None,
        samples: int = 16,
        loss_mask: Tensor | None = None,
        **cond: Any,
    ) -> Tensor:
        """Monte-Carlo upper bound on -log p(x0) per sequence, in nats per counted token: (B,).

        Uses the ELBO in its count form (LLaDA, Nie et al. 2025, https://arxiv.org/abs/2502.09992,
        eq. 6): with n counted tokens, draw k uniformly from 1..n, mask k of them uniformly, and
        score the mean of -log p(x0^l | x_t) over the masked ones. For a denoiser that ignores t
        (called here with t = k / n, the masked share) its expectation is exactly the
        continuous-time ELBO of ``loss`` over all of (0, 1] (integrate t out per pattern: a pattern
        with k masked tokens has weight B(k, n - k + 1)), and its variance is far lower: no 1/t
        weight. The ``samples`` draws of k are stratified per row. A time-conditioned denoiser is
        scored at t = k / n too, as LLaDA evaluates.

        ``loss_mask`` as in ``loss``: uncounted positions stay visible, so the bound is on the
        counted tokens given the others. For a corpus, average rows weighted by their numbers of
        counted tokens; divide nats by ln 2 for bits per token; exp of the corpus value bounds the
        perplexity.
        """
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        counted = self._counted(x0, loss_mask)
        n_row = counted.sum(1)  # (B,)
        if bool((n_row == 0).any()):
            raise ValueError("every row of x0 needs at least one counted token (loss_mask)")
        groups = self._to_groups(counted)  # (G, S): rows, or the rows' blocks
        n = groups.sum(1)
        offset = torch.rand(len(groups), generator=generator, device=x0.device, dtype=torch.float64)
        total = torch.zeros(x0.shape[0], device=x0.device, dtype=torch.float64)
        context = self._with_context(cond, x0)
        for s in range(samples):
            k = ((s + offset) / samples * n).floor().long() + 1  # uniform on 1..n per group
            k = torch.where(n > 0, k, 0)
            weight = self._weights(self._mask_exactly(groups, k, generator), n, k, x0.shape)
            chosen = weight > 0
            nll = self._masked_nll(denoiser, x0, chosen, (chosen.sum(1) / n_row).float(), context)
            total += (nll.double() * weight).sum(1) / n_row
        return total / samples

    def _count_range(self, n: Tensor) -> tuple[Tensor, Tensor]:
        """The fewest and most masked tokens (G,) of groups of ``n`` counted tokens whose share
        lies in ``mask_range``: 1 and n for the whole range; at least one count per group."""
        lo, hi = self.mask_range
        if not self.partial:
            return n.clamp_max(1), n
        first = torch.ceil(lo * n.double() - 1e-9).long().clamp_min(1).minimum(n)
        last = torch.floor(hi * n.double() + 1e-9).long().minimum(n).maximum(first)
        return first, last

    def _to_groups(self, counted: Tensor) -> Tensor:
        """(B, L) -> (G, S): the rows themselves, or with ``block`` every row's blocks of
        ``block`` positions (G = B * ceil(L / block); a short last block is padded uncounted)."""
        if self.block is None:
            return counted
        pad = -counted.shape[1] % self.block
        if pad:
            counted = torch.cat([counted, counted.new_zeros(counted.shape[0], pad)], 1)
        return counted.reshape(-1, self.block)

    def _weights(self, masked: Tensor, n: Tensor, k: Tensor, shape: torch.Size) -> Tensor:
        """(B, L) float32: n / k of its group at every masked position (the count form's
        weight), 0 elsewhere; masked (G, S) as ``_to_groups`` lays them out."""
        w = torch.where(masked, (n / k.clamp_min(1)).float()[:, None], 0.0)
        return w.reshape(shape[0], -1)[:, : shape[1]]

    def _with_context(self, cond: dict, x0: Tensor) -> dict:
        """The denoiser's keyword arguments: with ``block``, the clean x0 as ``context``."""
        return cond if self.block is None else {**cond, "context": x0}

    @staticmethod
    def _mask_exactly(counted: Tensor, k: Tensor, generator: torch.Generator | None) -> Tensor:
        """(B, L) bool: k (B,) counted positions per row, chosen uniformly at random."""
        scores = torch.rand(counted.shape, generator=generator, device=counted.device)
        scores = scores.masked_fill(~counted, 2.0)  # uncounted positions rank last
        return scores.argsort(1).argsort(1) < k[:, None]

    def _masked_nll(
        self, denoiser: Any, x0: Tensor, chosen: Tensor, t: Tensor, cond: dict
    ) -> Tensor:
        """-log p(x0 | x_t) (B, L) at the ``chosen`` positions (0 elsewhere), where x_t is x0
        with exactly those positions masked and the denoiser sees time t (B,)."""
        xt = torch.where(chosen, self.mask_id, x0)
        return torch.where(chosen, self._token_nll(denoiser(xt, t, **cond), x0), 0.0)

    def _token_nll(self, logits: Tensor, x0: Tensor) -> Tensor:
        """-log p(x0 | x_t) (B, L) float32 from the denoiser's logits (B, L, V)."""
        if logits.shape != (*x0.shape, self.vocab_size):
            raise ValueError(
                f"the denoiser must return logits of shape {(*x0.shape, self.vocab_size)} "
                f"(x0's shape plus vocab_size), got {tuple(logits.shape)}"
            )
        logp = clean_log_probs(logits, self.mask_id)
        return -logp.gather(-1, x0.long().unsqueeze(-1)).squeeze(-1)

    def _counted(self, x0: Tensor, loss_mask: Tensor | None) -> Tensor:
        self._check_tokens(x0, "x0")
        if x0.ndim != 2:
            raise ValueError(f"x0 must be (B, L) tokens, got shape {tuple(x0.shape)}")
        if loss_mask is None:
            return torch.ones_like(x0, dtype=torch.bool)
        if loss_mask.shape != x0.shape or loss_mask.dtype != torch.bool:
            raise ValueError(
                f"loss_mask must be a bool tensor shaped like x0 {tuple(x0.shape)}, got "
                f"{loss_mask.dtype} {tuple(loss_mask.shape)}"
            )
        return loss_mask

    @staticmethod
    def _check_tokens(x: Tensor, name: str) -> None:
        if x.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise TypeError(f"{name} must hold integer token ids, got dtype {x.dtype}")
