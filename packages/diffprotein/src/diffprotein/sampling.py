"""Sampling and editing through diffcore's discrete samplers: the family is bound with
``condition`` (or ``guidance`` for classifier-free guidance), motifs are the samplers'
``known`` + ``mask``, the length is the number of masks in a row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from diffcore.denoisers import condition, guidance
from diffcore.processes.mask import cosine_mask_grid, linear_mask_grid
from diffcore.samplers import CONFIDENCES, DISCRETE_SAMPLERS
from diffcore.samplers.discrete import Confidence
from diffprotein.alphabet import MASK_ID, PAD_ID, decode, encode
from diffprotein.conditioning import LengthPrior, Motif, family_ids
from diffprotein.data import ProteinRecord
from diffprotein.model import ProteinDenoiser, process_for

__all__ = ["Sample", "SamplingConfig", "redesign", "regions_mask", "sample"]

# Mask draws of the NLL bound per candidate when best_of ranks them (stratified over the
# masked share, so a few draws already cover light and heavy masking)
RANKING_DRAWS = 4


@dataclass(frozen=True)
class SamplingConfig:
    """How sequences are drawn."""

    # masked_ancestral: each residue drawn from the model's conditional, ~one per step (EvoDiff's
    # order-agnostic decoding), so samples follow the model's distribution; confidence: most
    # confident positions first (MaskGIT, DPLM), sharper but prone to repeats in weak models
    sampler: Literal["confidence", "masked_ancestral"] = "masked_ancestral"
    # network calls per batch; None: one per residue (the finest). A block-diffusion model
    # rounds it up to a multiple of its number of blocks: each block gets the same share
    steps: int | None = None
    schedule: Literal["linear", "cosine"] = "linear"  # mask share per step (cosine: MaskGIT)
    temperature: float = 1.0  # softmax temperature of every draw; 0 = argmax
    guidance: float = 1.0  # classifier-free guidance on the family; 1 = plain conditional
    # confidence only: MaskGIT's randomized order (Gumbel noise on the ranking, fading to none by
    # the last step), between pure confidence order (sharp, repeats) and ancestral (diverse)
    confidence_noise: float = 0.0
    # confidence only: how positions are ranked, by the drawn residue's "probability" (MaskGIT;
    # leans to common residues) or by the "margin" or "entropy" of the position's distribution
    # (blind to the draw, so every residue is an exact draw from the model)
    confidence: Confidence = "probability"
    # confidence only: also reveal, in ranking order, as many residues as keep the sum of their
    # entropies minus the largest under this many nats (EB-sampler): sure residues go together,
    # unsure ones alone, so with the default one step per residue the bound sets the pace
    entropy_bound: float | None = None
    # draw only from the smallest set of residues holding this much probability (nucleus
    # sampling, Holtzman et al. 2020); None = the whole distribution. It trims the rare draws
    # that a weak model makes too often, without sharpening the likely ones as T < 1 does
    top_p: float | None = None
    # draw this many candidates per sample (same length, family and motif) and keep the one
    # the denoiser itself finds most likely: the lowest bound on its NLL per generated residue.
    # Typical sequences over odd ones, as filtering designs by model perplexity does; it costs
    # best_of times the passes, and novelty and diversity fall as it grows
    best_of: int = 1
    batch_size: int = 64  # sequences per sampler call

    def __post_init__(self) -> None:
        if self.sampler not in DISCRETE_SAMPLERS:
            raise ValueError(f"sampler must be one of {sorted(DISCRETE_SAMPLERS)}")
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {self.schedule!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1 or None, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.best_of < 1:
            raise ValueError(f"best_of must be >= 1, got {self.best_of}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must lie in (0, 1] or be None, got {self.top_p}")
        if self.confidence_noise < 0:
            raise ValueError(f"confidence_noise must be >= 0, got {self.confidence_noise}")
        if self.confidence not in CONFIDENCES:
            raise ValueError(f"confidence must be one of {CONFIDENCES}, got {self.confidence!r}")
        if self.entropy_bound is not None and not self.entropy_bound >= 0.0:
            raise ValueError(f"entropy_bound must be >= 0 (nats), got {self.entropy_bound}")
        if (
            self.confidence_noise
            or self.confidence != "probability"
            or self.entropy_bound is not None
        ) and self.sampler != "confidence":
            raise ValueError(
                f"confidence, confidence_noise and entropy_bound pace the confidence sampler's "
                f"reveals; sampler {self.sampler!r} draws its order at random already"
            )


@dataclass(frozen=True)
class Sample:
    """A generated sequence and the header fields that say how it was made."""

    id: str
    sequence: str
    fields: dict[str, Any]


def _denoiser(model: ProteinDenoiser, family: Tensor, scale: float) -> Any:
    # a block model's pass leaves out the blocks after the one being drawn (exact, and cheaper)
    fixed = {"allow_unknown": False, "skip_later_blocks": model.config.diffusion_block is not None}
    if scale != 1.0 and bool((family >= 0).any()):
        guided = guidance(
            model, scale, cond={"family": family}, uncond={"family": torch.full_like(family, -1)}
        )
        return condition(guided, **fixed)
    return condition(model, family=family, **fixed)


def _run_sampler(
    model: ProteinDenoiser,
    x: Tensor,
    family: Tensor,
    config: SamplingConfig,
    generator: torch.Generator,
    known: Tensor | None = None,
    mask: Tensor | None = None,
    bar: Any = None,
) -> Tensor:
    """One sampler call on a batch x (B, W) of masks, residues and trailing padding."""
    todo = x == MASK_ID
    if mask is not None:
        todo &= ~mask  # motif positions are known, not generated
    steps = config.steps or max(1, int(todo.sum(1).max()))
    block = model.config.diffusion_block
    if block is not None:  # block by block, left to right, on the model's own blocks
        if config.sampler != "confidence":
            raise ValueError(
                "a block-diffusion model generates block by block: use the confidence sampler"
            )
        columns = todo.any(0).nonzero()
        first = int(columns[0]) if len(columns) else 0
        blocks = max(1, math.ceil((x.shape[1] - first + first % block) / block))
        steps = blocks * math.ceil(steps / blocks)  # the same number of steps for every block
    grid = (linear_mask_grid if config.schedule == "linear" else cosine_mask_grid)(steps)
    sampler = DISCRETE_SAMPLERS[config.sampler]

    if bar is not None:
        bar.total += steps
        bar.refresh()

    def tick(*_: Any) -> None:
        if bar is not None:
            bar.update(1)

    options = (
        {
            "confidence": config.confidence,
            "confidence_noise": config.confidence_noise,
            "entropy_bound": config.entropy_bound,
            "block_size": block,
            "align_blocks": block is not None,
        }
        if config.sampler == "confidence"
        else {}
    )
    return sampler(
        _denoiser(model, family.to(x.device), config.guidance),
        x,
        grid,
        generator=generator,
        callback=tick,
        mask_id=MASK_ID,
        known=known,
        mask=mask,
        temperature=config.temperature,
        top_p=config.top_p,
        time_independent=True,
        **options,
    )


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _batch_generator(seed: int, batch: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + batch) % 2**63)


@torch.no_grad()
def sample(
    model: ProteinDenoiser,
    n: int,
    *,
    family: str | None = None,
    length: int | Sequence[int] | None = None,
    motif: Motif | None = None,
    config: SamplingConfig = SamplingConfig(),
    seed: int = 0,
    progress: bool = True,
    id_prefix: str = "sample",
) -> list[Sample]:
    """``n`` new sequences, optionally of a family, of given length(s), around a motif.

    length: one length for all, one per sample, or None to draw each from the lengths seen in
    training for the family (at least the motif's end). Motif residues are the sampler's
    ``known`` tokens, so they are never changed. The same seed gives the same samples."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    fam = family_ids([family], model.config.families)
    lengths = _lengths(model, n, family, length, motif, seed)
    k = config.best_of
    candidates = [size for size in lengths for _ in range(k)]  # a sample's k share its length
    device = _device_of(model)
    model.eval()
    drawn: list[Tensor] = []
    nll: list[float] = []
    # the total grows batch by batch; the delay keeps tqdm from drawing an empty bar first
    with tqdm(total=0, desc="sample", unit="step", delay=0.1, disable=not progress) as bar:
        for b, start in enumerate(range(0, len(candidates), config.batch_size)):
            chunk = candidates[start : start + config.batch_size]
            width = max(chunk)
            x = torch.full((len(chunk), width), PAD_ID, dtype=torch.long)
            for row, size in enumerate(chunk):
                x[row, :size] = MASK_ID
            known = mask = None
            if motif is not None:
                pairs = [motif.known_and_mask(size, width) for size in chunk]
                known = torch.stack([p[0] for p in pairs]).to(device)
                mask = torch.stack([p[1] for p in pairs]).to(device)
            generator = _batch_generator(seed, b, device)
            families = fam.expand(len(chunk)).to(device)
            tokens = _run_sampler(
                model, x.to(device), families, config, generator, known, mask, bar
            )
            drawn += [tokens[row, :size].cpu() for row, size in enumerate(chunk)]
            if k > 1:
                nll += _own_nll(model, tokens, families, mask, generator).tolist()
    out: list[Sample] = []
    for index, size in enumerate(lengths):
        group = range(index * k, (index + 1) * k)
        best = min(group, key=nll.__getitem__) if k > 1 else index
        fields: dict[str, Any] = {"family": family or "none", "length": size}
        if motif is not None:
            fields["motif"] = str(motif)
        fields.update(_sampling_fields(config, seed))
        out.append(Sample(f"{id_prefix}_{index:05d}", decode(drawn[best]), fields))
    return out


def _own_nll(
    model: ProteinDenoiser,
    tokens: Tensor,
    family: Tensor,
    motif_mask: Tensor | None,
    generator: torch.Generator,
) -> Tensor:
    """(B,) the denoiser's bound on the NLL per generated residue of each row (family-
    conditioned, no guidance); motif residues are context, not scored."""
    counted = tokens != PAD_ID
    if motif_mask is not None:
        counted &= ~motif_mask
        if bool((counted.sum(1) == 0).any()):  # a motif that fills its sequence
            counted = tokens != PAD_ID
    return process_for(model.config.diffusion_block).nll_bound(
        model,
        tokens,
        generator=generator,
        samples=RANKING_DRAWS,
        loss_mask=counted,
        family=family,
    )


def _sampling_fields(config: SamplingConfig, seed: int) -> dict[str, Any]:
    return {
        "seed": seed,
        "sampler": config.sampler,
        "steps": config.steps or "per_residue",
        "temperature": config.temperature,
        "guidance": config.guidance,
        **({"top_p": config.top_p} if config.top_p is not None else {}),
        **({"confidence_noise": config.confidence_noise} if config.confidence_noise else {}),
        **({"confidence": config.confidence} if config.confidence != "probability" else {}),
        **({"entropy_bound": config.entropy_bound} if config.entropy_bound is not None else {}),
        **({"best_of": config.best_of} if config.best_of > 1 else {}),
    }


def _lengths(
    model: ProteinDenoiser,
    n: int,
    family: str | None,
    length: int | Sequence[int] | None,
    motif: Motif | None,
    seed: int,
) -> list[int]:
    if length is None:
        prior = LengthPrior.from_json(model.config.lengths)
        lengths = prior.sample(family, n, torch.Generator().manual_seed(seed))
        if motif is not None:
            lengths = [max(k, motif.end) for k in lengths]
    elif isinstance(length, int):
        lengths = [length] * n
    else:
        lengths = [int(k) for k in length]
        if len(lengths) != n:
            raise ValueError(f"got {len(lengths)} lengths for {n} samples")
    for k in lengths:
        if not 1 <= k <= model.config.max_length:
            raise ValueError(
                f"length {k} is outside 1..{model.config.max_length} (the model's max_length)"
            )
        if motif is not None:
            motif.check_fits(k)
    return lengths


def regions_mask(text: str, length: int) -> Tensor:
    """(length,) bool, True inside 1-based inclusive ranges ``"10-20,31,40-45"``."""
    out = torch.zeros(length, dtype=torch.bool)
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(
                f"cannot read region {part!r}: expected START-END or POSITION (1-based)"
            ) from None
        if not 1 <= a <= b <= length:
            raise ValueError(f"region {part!r} is outside 1..{length}")
        out[a - 1 : b] = True
    return out


@torch.no_grad()
def redesign(
    model: ProteinDenoiser,
    records: Sequence[ProteinRecord],
    *,
    regions: str | None = None,
    fraction: float | None = None,
    family: str | None = None,
    config: SamplingConfig = SamplingConfig(),
    seed: int = 0,
    progress: bool = True,
) -> list[Sample]:
    """Regenerate part of each record (infilling), keeping every other residue: the 1-based
    ``regions`` (e.g. ``"10-20,40-45"``), or a random ``fraction`` of positions. The family
    defaults to each record's own where the model knows it."""
    if (regions is None) == (fraction is None):
        raise ValueError("give exactly one of regions and fraction")
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    if config.best_of != 1:
        raise ValueError("best_of ranks whole new sequences: use it with sample(), not redesign()")
    device = _device_of(model)
    model.eval()
    g = torch.Generator().manual_seed(seed)
    out: list[Sample] = []
    with tqdm(total=len(records), desc="redesign", unit="seq", disable=not progress) as bar:
        for b, start in enumerate(range(0, len(records), config.batch_size)):
            chunk = records[start : start + config.batch_size]
            width = max(len(r.sequence) for r in chunk)
            x = torch.full((len(chunk), width), PAD_ID, dtype=torch.long)
            names = []
            for row, r in enumerate(chunk):
                k = len(r.sequence)
                if k > model.config.max_length:
                    raise ValueError(f"record {r.id!r} is longer than max_length")
                x[row, :k] = encode(r.sequence)
                if regions is not None:
                    hide = regions_mask(regions, k)
                else:
                    hide = torch.rand(k, generator=g) < fraction
                    hide[torch.randint(k, (1,), generator=g)] = True  # at least one
                x[row, :k][hide] = MASK_ID
                name = family or r.family
                names.append(name if name in model.config.families else None)
            fam = family_ids(names, model.config.families)
            tokens = _run_sampler(
                model, x.to(device), fam, config, _batch_generator(seed, b, device)
            )
            for row, r in enumerate(chunk):
                fields = {"source": r.id, "family": names[row] or "none"}
                fields["redesigned"] = regions or f"random{fraction:g}"
                fields.update(_sampling_fields(config, seed))
                rid = f"{r.id.replace('/', '_')}_redesign"
                out.append(Sample(rid, decode(tokens[row, : len(r.sequence)]), fields))
            bar.update(len(chunk))
    return out
