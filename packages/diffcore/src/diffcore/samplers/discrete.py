"""Samplers for absorbing-state (masked) diffusion: pure functions of a TokenDenoiser and a grid.

All share one signature::

    sample_<algo>(denoiser, x, schedule, /, *, generator=None, callback=None, mask_id,
                  known=None, mask=None, temperature=1.0, reuse_unchanged=None,
                  time_independent=False, **algo_options) -> Tensor

- ``denoiser``: ``D(x, t) -> logits (B, L, V)`` (bind conditioning with
  ``diffcore.denoisers.condition``); the mask token's logit is ignored (set to -inf).
- ``x``: (B, L) integer tokens, ``mask_id`` where a token is to be generated. Every other token
  is context and never changes (an absorbing process never revisits a revealed token).
- ``schedule``: 1-D grid of times from t0 <= 1 down to 0, t the masking probability
  (``diffcore.processes.mask.linear_mask_grid`` / ``cosine_mask_grid``); one step per pair.
- ``known`` + ``mask`` (infilling, motif scaffolding): where ``mask`` is True the token is
  ``known`` from the start, exactly as if it were written into ``x``. With an exact denoiser,
  ancestral sampling then draws from the exact conditional (MDLM issue #18's recipe, built in).
- ``temperature``: candidates come from softmax(logits / temperature); 0 takes the argmax.
- ``reuse_unchanged``: when no token changed since the last network call, reuse its logits
  instead of calling again (MDLM's ``ddpm_cache``). Exact for a denoiser that ignores t, so it
  defaults to ``time_independent``; for a time-conditioned one it reuses logits from an earlier t.
- ``callback(Step(i, total, level=t, level_next=s), x, denoised)`` after every step, where
  ``denoised`` (B, L) is ``x`` with every mask replaced by this step's candidate token.
- All randomness comes from ``generator``. Gumbel-max runs in float64: low-precision Gumbel noise
  truncates its tail and silently lowers the temperature (Zheng et al. 2024,
  https://arxiv.org/abs/2409.02908; LLaDA samples in float64 for the same reason).

Each returns (B, L) long tokens with no mask left.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from diffcore._utils import grid_levels
from diffcore.denoisers.protocols import TokenDenoiser
from diffcore.kernels.token_sampling import sample_tokens
from diffcore.processes.mask import clean_log_probs
from diffcore.samplers.step import Callback, Step
from diffcore.seeding import Generator, rand, rand_rows

__all__ = [
    "CONFIDENCES",
    "DISCRETE_SAMPLERS",
    "Confidence",
    "sample_confidence",
    "sample_masked_ancestral",
]

Confidence = Literal["probability", "margin", "entropy"]
CONFIDENCES = ("probability", "margin", "entropy")


class _Network:
    """The denoiser as log-probabilities over clean tokens, reusing the last answer while x is
    unchanged (when ``reuse``). Samplers never modify x in place, so keeping a reference is safe."""

    def __init__(self, denoiser: TokenDenoiser, mask_id: int, reuse: bool) -> None:
        self.denoiser, self.mask_id, self.reuse = denoiser, mask_id, reuse
        self._x: Tensor | None = None
        self._logp: Tensor | None = None

    def __call__(self, x: Tensor, t: float) -> Tensor:
        if self.reuse and self._x is not None and torch.equal(x, self._x):
            return self._logp
        logits = self.denoiser(x, torch.full((x.shape[0],), t, device=x.device))
        if logits.ndim != 3 or logits.shape[:2] != x.shape:
            raise ValueError(
                f"the denoiser must return logits (B, L, V) = {(*x.shape, 'V')}, "
                f"got {tuple(logits.shape)}"
            )
        self._x, self._logp = x, clean_log_probs(logits, self.mask_id)
        return self._logp


def _setup(
    x: Tensor, schedule: Tensor, mask_id: int, known: Tensor | None, mask: Tensor | None
) -> tuple[Tensor, list[float]]:
    """Check the inputs; return x (long) with known tokens written in, and the grid as floats."""
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise TypeError(f"x must hold integer token ids, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"x must be (B, L) tokens, got shape {tuple(x.shape)}")
    levels = grid_levels(schedule, var="t", upper=1.0)
    if (known is None) != (mask is None):
        raise ValueError("known and mask go together: pass both (infilling) or neither")
    if known is not None:
        try:
            known = known.to(x.device, x.dtype).expand_as(x)
            mask = torch.as_tensor(mask, device=x.device).bool().expand_as(x)
        except RuntimeError as err:
            raise ValueError(f"known and mask must broadcast to x {tuple(x.shape)}: {err}") from err
        if bool((mask & (known == mask_id)).any()):
            raise ValueError(f"known holds mask_id {mask_id} at a position where mask is True")
        x = torch.where(mask, known, x)
    return x.long(), levels


def _check_temperature(temperature: float) -> None:
    if not temperature >= 0.0:
        raise ValueError(f"temperature must be >= 0 (0 = argmax), got {temperature}")


def _check_top_p(top_p: float | None) -> None:
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")


def _candidates(
    logp: Tensor,
    masked: Tensor,
    temperature: float,
    generator: Generator,
    top_p: float | None = None,
) -> Tensor:
    """One token (B, L) per masked position drawn from softmax(logp / temperature), restricted to
    the top_p nucleus; unmasked positions get 0. Only masked rows are drawn (memory ~ N x V), by
    :func:`diffcore.kernels.sample_tokens` (a fused kernel on CUDA; elsewhere the float64
    reference, which is exactly the Gumbel-max draw this module always made)."""
    uniform = (
        None
        if temperature == 0.0
        else rand_rows(masked, logp.shape[-1], generator, dtype=torch.float64)
    )
    drawn, _ = sample_tokens(logp[masked], temperature=temperature, top_p=top_p, noise=uniform)
    return torch.zeros(masked.shape, dtype=torch.long, device=masked.device).masked_scatter(
        masked, drawn
    )


def _report(callback: Callback | None, step: Step, x: Tensor, denoised: Tensor) -> None:
    if callback is not None:
        callback(step, x, denoised)


@torch.no_grad()
def sample_masked_ancestral(
    denoiser: TokenDenoiser,
    x: Tensor,
    schedule: Tensor,
    /,
    *,
    generator: Generator = None,
    callback: Callback | None = None,
    mask_id: int,
    known: Tensor | None = None,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    reuse_unchanged: bool | None = None,
    time_independent: bool = False,
    top_p: float | None = None,
) -> Tensor:
    """MDLM's ancestral sampler (Sahoo et al. 2024, https://arxiv.org/abs/2406.07524, eq. 7):
    from t to s, each masked position is revealed with probability (t - s) / t, its token drawn
    from softmax(logits / temperature) (nucleus ``top_p`` if given); at s = 0 all are revealed.

    Positions revealed in the same step are drawn independently, so the output follows the
    model's joint distribution only as steps get fine (about one reveal per step).
    """
    x, levels = _setup(x, schedule, mask_id, known, mask)
    _check_temperature(temperature)
    _check_top_p(top_p)
    reuse = time_independent if reuse_unchanged is None else reuse_unchanged
    net = _Network(denoiser, mask_id, reuse)
    total = len(levels) - 1
    for i in range(total):
        t, s = levels[i], levels[i + 1]
        masked = x == mask_id
        if bool(masked.any()):
            candidates = _candidates(net(x, t), masked, temperature, generator, top_p)
            denoised = torch.where(masked, candidates, x)
            u = rand(x.shape, generator, device=x.device, dtype=torch.float64)
            x = torch.where(masked & (u < (t - s) / t), candidates, x)  # s = 0: u < 1 always
        else:
            denoised = x  # nothing left to reveal: no network call
        _report(callback, Step(i, total, t, s), x, denoised)
    return x


def _step_plan(
    levels: list[float], masked: Tensor, block_size: int | None, align: bool = False
) -> list[tuple[slice, float, float, float]]:
    """(block columns, block-local level after the step, t, s) for every step.

    Without blocks: one block of all columns, following the grid. With blocks (LLaDA's
    semi-autoregressive remasking, Nie et al. 2025, https://arxiv.org/abs/2502.09992): blocks of
    ``block_size`` columns tile the sequence from its first masked column, left to right; each
    gets n / blocks steps and follows the grid thinned to that many steps (linear stays linear,
    cosine stays cosine). The time t seen by the denoiser is then the overall masked share,
    (blocks after this one + the block's own level) / blocks, which decreases from 1 to 0.
    ``align``: the tiling starts at the multiple of ``block_size`` at or before that column.
    """
    n, width = len(levels) - 1, masked.shape[1]
    if block_size is None:
        return [(slice(None), levels[i + 1], levels[i], levels[i + 1]) for i in range(n)]
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    columns = masked.any(0).nonzero()
    start = int(columns[0]) if len(columns) else 0
    start -= start % block_size if align else 0
    blocks = max(1, math.ceil((width - start) / block_size))
    if n % blocks:
        raise ValueError(
            f"{n} steps cannot be shared evenly among {blocks} blocks of {block_size} tokens: "
            f"use a grid whose number of steps is a multiple of {blocks}"
        )
    plan = []
    for j in range(blocks):
        cols = slice(start + j * block_size, min(width, start + (j + 1) * block_size))
        for k in range(n // blocks):
            local_t, local_s = levels[k * blocks], levels[(k + 1) * blocks]
            left = blocks - 1 - j
            plan.append((cols, local_s, (left + local_t) / blocks, (left + local_s) / blocks))
    return plan


def _entropy(logp: Tensor) -> Tensor:
    """(B, L) entropy in nats of each position's distribution over clean tokens."""
    p = logp.exp()
    return -torch.where(p > 0, p * logp, 0.0).sum(-1)  # banned tokens: 0 * -inf = NaN


def _confidence(logp: Tensor, candidates: Tensor, kind: Confidence) -> Tensor:
    """How sure the model is at each position (B, L), in [0, 1], under the untempered model (not
    the tempered confidence that ``sample_tokens`` returns alongside its draw):

    - "probability": of the drawn candidate (MaskGIT). It ranks a rare draw low, so the rare draw
      is thrown back and redrawn later: the tokens kept lean to the likely ones, like a lower
      temperature, even at temperature 1.
    - "margin": between the position's two most likely tokens (Kim et al. 2025,
      https://arxiv.org/abs/2502.06768).
    - "entropy": exp(-entropy) of the position's distribution (1 for a sure token, 1/V for a
      uniform one).

    "margin" and "entropy" never look at the draw, so each revealed token is an exact draw from
    the model's conditional: with one token per step, an exact model's samples follow its
    distribution in whatever order the ranking picks (tested), while "probability" does not.
    """
    if kind == "probability":
        return logp.gather(-1, candidates.unsqueeze(-1)).squeeze(-1).exp()
    if kind == "entropy":
        return (-_entropy(logp)).exp()
    top2 = logp.topk(2, dim=-1).values.exp()
    return top2[..., 0] - top2[..., 1]


def _entropy_bounded_count(logp: Tensor, score: Tensor, bound: float) -> Tensor:
    """(B,) how many positions, taken in ``score`` order (finite scores only), fit the
    entropy bound: the largest prefix U with sum_U H - max_U H <= bound (EB-sampler, Ben-Hamu et
    al. 2025, https://arxiv.org/abs/2505.24857). Tokens drawn together are drawn independently;
    the error that costs is at most sum_U H minus the joint entropy, itself at least max_U H, so
    the bound caps it. Always >= 1 where a row has a finite score; the prefix sum is
    non-decreasing, so the positions that fit are a prefix."""
    order = torch.argsort(score, dim=1, descending=True, stable=True)
    finite = score.gather(1, order) > -math.inf
    h = torch.where(finite, _entropy(logp).double().gather(1, order), 0.0)
    spent = h.cumsum(1) - h.cummax(1).values
    return (finite & (spent <= bound)).sum(1)


def _top(score: Tensor, count: Tensor) -> Tensor:
    """(B, L) bool: the ``count`` (B,) highest finite scores of each row (ties: leftmost)."""
    rank = torch.argsort(score, dim=1, descending=True, stable=True).argsort(1)
    return (rank < count[:, None]) & (score > -math.inf)


def _reveal(score: Tensor, count: Tensor, spacing: int) -> Tensor:
    """(B, L) bool: which positions a step reveals: ``count`` (B,) per row among finite scores,
    most confident first, each more than ``spacing`` from the others while that is possible."""
    if spacing == 0:
        return _top(score, count)
    columns = torch.arange(score.shape[1], device=score.device)
    chosen = torch.zeros(score.shape, dtype=torch.bool, device=score.device)
    free = score.clone()
    # one pick per row per round; a step reveals a few tokens, so the rounds are few
    for _ in range(int(count.max())):
        best = free.argmax(1)
        ok = (chosen.sum(1) < count) & (free.gather(1, best[:, None]).squeeze(1) > -math.inf)
        if not bool(ok.any()):
            break
        chosen |= ok[:, None] & (columns == best[:, None])
        near = (columns[None, :] - best[:, None]).abs() <= spacing
        free = free.masked_fill(ok[:, None] & near, -math.inf)
    rest = torch.where(chosen, -math.inf, score)  # spacing ran out of room: fill by confidence
    return chosen | _top(rest, count - chosen.sum(1))


@torch.no_grad()
def sample_confidence(
    denoiser: TokenDenoiser,
    x: Tensor,
    schedule: Tensor,
    /,
    *,
    generator: Generator = None,
    callback: Callback | None = None,
    mask_id: int,
    known: Tensor | None = None,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    reuse_unchanged: bool | None = None,
    time_independent: bool = False,
    threshold: float | None = None,
    block_size: int | None = None,
    confidence: Confidence = "probability",
    confidence_noise: float = 0.0,
    spacing: int = 0,
    top_p: float | None = None,
    entropy_bound: float | None = None,
    align_blocks: bool = False,
) -> Tensor:
    """Confidence-ordered parallel unmasking (MaskGIT, Chang et al. 2022,
    https://arxiv.org/abs/2202.04200; LLaDA's low-confidence remasking).

    Each step draws a candidate for every masked position, then reveals the most confident ones
    (ties: leftmost first): as many as leave floor(s * n0) of the block's n0 originally masked
    positions masked after a step ending at block level s. ``threshold``: also reveal every
    candidate whose confidence is >= threshold, and at least one per row (Fast-dLLM, Wu et al.
    2025, https://arxiv.org/abs/2505.22618); a fine grid (one step per token) then lets the
    threshold alone set the pace. ``entropy_bound`` (nats): also reveal, in ranking order, as
    many positions as fit sum H - max H <= entropy_bound over their entropies H (EB-sampler,
    Ben-Hamu et al. 2025, https://arxiv.org/abs/2505.24857): near-certain tokens go together,
    uncertain ones one at a time; 0 on a fine grid is one token per step (ties of zero entropy
    aside). Unlike a threshold it also fires when no token is sure on its own but several
    together carry little entropy. A step with nothing left to reveal in its block makes no
    network call (it still reports to the callback). ``block_size``: semi-autoregressive blocks,
    see ``_step_plan``; ``align_blocks``: the blocks start at multiples of ``block_size`` (a
    block-diffusion model's own blocks) rather than at the first masked column.
    ``confidence``: "probability" of the candidate, "margin" between the two best tokens or
    "entropy" of the position (see ``_confidence``: the last two keep every draw exact).
    ``confidence_noise``: MaskGIT's randomized ranking: positions are ranked by
    ``log confidence + confidence_noise * s * Gumbel`` (s: the block's level after the step, so
    the noise fades to nothing by the last step). Plain confidence order makes a weak model
    reveal its most predictable token everywhere first and repeat it; the noise spreads early
    reveals over the sequence (MaskGIT uses 4.5). 0: pure confidence order.
    ``spacing``: positions revealed in one step lie more than ``spacing`` apart (greedily, in
    confidence order) while the step's count allows it; the rest of the count then goes to the
    most confident positions left. Neighbours drawn in the same step are drawn independently,
    and neighbours depend on each other most (dilated unmasking, Luxembourg et al. 2025,
    https://arxiv.org/abs/2506.19037); an already revealed neighbour is context, not a conflict.
    0: no constraint.
    ``top_p``: candidates come from the nucleus of softmax(logits / temperature) (Holtzman et
    al. 2020); the ranking still sees the whole distribution.
    """
    x, levels = _setup(x, schedule, mask_id, known, mask)
    _check_temperature(temperature)
    _check_top_p(top_p)
    if confidence not in CONFIDENCES:
        raise ValueError(f"confidence must be one of {CONFIDENCES}, got {confidence!r}")
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    if entropy_bound is not None and not entropy_bound >= 0.0:
        raise ValueError(f"entropy_bound must be >= 0 (nats), got {entropy_bound}")
    if not confidence_noise >= 0.0:
        raise ValueError(f"confidence_noise must be >= 0, got {confidence_noise}")
    if not isinstance(spacing, int) or spacing < 0:
        raise ValueError(f"spacing must be an integer >= 0, got {spacing!r}")
    reuse = time_independent if reuse_unchanged is None else reuse_unchanged
    net = _Network(denoiser, mask_id, reuse)
    plan = _step_plan(levels, x == mask_id, block_size, align_blocks)
    block, n0, denoised = None, None, x
    for i, (cols, level_after, t, s) in enumerate(plan):
        if block is None or cols != plan[i - 1][0]:
            block = torch.zeros_like(x, dtype=torch.bool)
            block[:, cols] = True
            n0 = ((x == mask_id) & block).sum(1)
        masked = x == mask_id
        eligible = masked & block
        if bool(eligible.any()):  # else the block is done early: no network call
            logp = net(x, t)
            # only rows with something to reveal draw: a row's draws then do not depend on
            # whether another row of its batch keeps the step going
            active = eligible.any(1, keepdim=True)
            drawn = masked & active
            candidates = _candidates(logp, drawn, temperature, generator, top_p)
            denoised = torch.where(drawn, candidates, x)
            sure = _confidence(logp, candidates, confidence)
            if confidence_noise > 0.0 and level_after > 0.0:
                u = torch.full(x.shape, 0.5, device=x.device, dtype=torch.float64)
                u[active[:, 0]] = rand_rows(active, x.shape[1], generator, dtype=torch.float64)
                gumbel = -torch.log(-torch.log(u))
                sure = (
                    sure.double().clamp_min(1e-300).log() + confidence_noise * level_after * gumbel
                )
            score = torch.where(eligible, sure, -math.inf)
            # + 1e-9: grid times like 0.7 * 10 land a hair below the integer they stand for
            keep_masked = torch.floor(level_after * n0.double() + 1e-9).long()
            count = (eligible.sum(1) - keep_masked).clamp_min(0)
            if threshold is not None:
                count = torch.maximum(count, (score >= threshold).sum(1))
                count = torch.maximum(count, eligible.any(1).long())
            if entropy_bound is not None:
                count = torch.maximum(count, _entropy_bounded_count(logp, score, entropy_bound))
            x = torch.where(_reveal(score, count, spacing), candidates, x)
        _report(callback, Step(i, len(plan), t, s), x, denoised)
    return x


DISCRETE_SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "masked_ancestral": sample_masked_ancestral,
    "confidence": sample_confidence,
}
"""Discrete samplers by name (for command lines and studies)."""
