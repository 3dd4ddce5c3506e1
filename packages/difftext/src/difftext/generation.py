"""Generation: diffcore's discrete samplers on a model's ``TextDenoiser`` (wrapped by prompt
guidance and top-p), or the autoregressive peer's own ancestral sampling. Templates fix any span
of tokens (``difftext.conditioning``): prefix continuation and infilling are one operation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from diffcore.processes import cosine_mask_grid, linear_mask_grid
from diffcore.samplers import CONFIDENCES, Callback, sample_confidence, sample_masked_ancestral
from diffcore.samplers.discrete import Confidence
from difftext.autoregressive import sample_causal
from difftext.conditioning import SPAN, TopP, parse_template, prompt_guidance, stack_templates
from difftext.model import TextModel
from difftext.tokenizer import banned_ids, start_id

__all__ = ["Generated", "SampleConfig", "generate"]


@dataclass(frozen=True)
class SampleConfig:
    """How to generate. Templates and their syntax: ``difftext.conditioning``."""

    length: int | None = 256  # tokens per text, prompt included; None: fill templates as written
    steps: int = 64  # sampler steps (at most one forward pass each)
    sampler: Literal["confidence", "ancestral"] = "confidence"  # most confident first / MDLM
    schedule: Literal["linear", "cosine"] = "linear"  # linear: the same count revealed per step
    threshold: float | None = None  # confidence: also reveal all candidates at least this sure
    entropy_bound: float | None = None  # confidence: also reveal while sum H - max H <= this (nats)
    block_size: int | None = None  # confidence: semi-autoregressive blocks of this many tokens
    confidence: Confidence = "probability"  # confidence: probability, margin or entropy
    confidence_noise: float = 0.0  # confidence: MaskGIT's randomized order (Gumbel scale, fading)
    spacing: int = 0  # confidence: tokens revealed together lie more than this many apart
    temperature: float = 1.0  # 0 = argmax
    top_p: float | None = None  # nucleus sampling; None = the full distribution
    guidance: float = 1.0  # classifier-free guidance on the prompt; 1 = off
    reuse: bool = True  # reuse the last forward pass when no token changed (MDLM's cache)
    batch_size: int = 16  # texts per sampler call

    def __post_init__(self) -> None:
        if self.sampler not in ("confidence", "ancestral"):
            raise ValueError(f"sampler must be 'confidence' or 'ancestral', got {self.sampler!r}")
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {self.schedule!r}")
        for name in ("steps", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.spacing, int) or self.spacing < 0:
            raise ValueError(f"spacing must be an integer >= 0, got {self.spacing!r}")
        if self.entropy_bound is not None and not self.entropy_bound >= 0.0:
            raise ValueError(f"entropy_bound must be >= 0 (nats), got {self.entropy_bound}")
        if self.confidence not in CONFIDENCES:
            raise ValueError(f"confidence must be one of {CONFIDENCES}, got {self.confidence!r}")
        if self.sampler == "ancestral" and (
            self.threshold is not None
            or self.entropy_bound is not None
            or self.block_size
            or self.confidence_noise
            or self.spacing
            or self.confidence != "probability"
        ):
            raise ValueError(
                "threshold, entropy_bound, block_size, confidence, confidence_noise and spacing "
                "belong to the confidence sampler"
            )


@dataclass(frozen=True)
class Generated:
    """One generated text. prompt: the template it was made from (None when unprompted);
    tokens: (L,) long."""

    index: int
    text: str
    prompt: str | None
    tokens: Tensor

    def record(self) -> dict:
        """The JSON object written per line of a samples file."""
        out = {"index": self.index, "text": self.text}
        return out if self.prompt is None else {**out, "prompt": self.prompt}


def _decode(tokenizer: PreTrainedTokenizerBase, row: Tensor) -> str:
    return tokenizer.decode(
        row.tolist(), skip_special_tokens=False, clean_up_tokenization_spaces=False
    )


def _sample_diffusion(
    text_model: TextModel,
    x: Tensor,
    fixed: Tensor,
    config: SampleConfig,
    generator: torch.Generator,
    callback: Callback | None,
) -> Tensor:
    if x.shape[1] > text_model.block_size:

        def window(x: Tensor, fixed: Tensor, config: SampleConfig) -> Tensor:
            return _sample_diffusion(text_model, x, fixed, config, generator, callback)

        return _sample_sliding(text_model, x, fixed, config, window)
    denoiser = text_model.denoiser(generating=True)
    if config.guidance != 1.0 and bool(fixed.any()):
        denoiser = prompt_guidance(denoiser, config.guidance, fixed)
    if config.top_p is not None:
        denoiser = TopP(denoiser, config.top_p, config.temperature, text_model.mask_id)
    grid = (linear_mask_grid if config.schedule == "linear" else cosine_mask_grid)(config.steps)
    block = config.block_size
    if text_model.diffusion_block is not None:  # block by block, on the model's own blocks
        if config.sampler == "ancestral":
            raise ValueError(
                "a block-diffusion model generates block by block: use the confidence sampler"
            )
        block = block or text_model.diffusion_block
        if text_model.diffusion_block % block:
            raise ValueError(
                f"block_size {block} must divide the model's diffusion block "
                f"{text_model.diffusion_block}: a block is generated after the ones before it"
            )
    common = dict(
        generator=generator, callback=callback, mask_id=text_model.mask_id,
        temperature=config.temperature, time_independent=True, reuse_unchanged=config.reuse,
    )  # fmt: skip
    if config.sampler == "ancestral":
        return sample_masked_ancestral(denoiser, x, grid, **common)
    return sample_confidence(
        denoiser, x, grid, threshold=config.threshold, entropy_bound=config.entropy_bound,
        block_size=block, confidence=config.confidence, confidence_noise=config.confidence_noise,
        spacing=config.spacing, align_blocks=text_model.diffusion_block is not None, **common,
    )  # fmt: skip


def _sample_sliding(
    text_model: TextModel,
    x: Tensor,
    fixed: Tensor,
    config: SampleConfig,
    window: Callable[[Tensor, Tensor, SampleConfig], Tensor],
) -> Tensor:
    """A text longer than the model's context (``block_size`` tokens): block by block, each
    drawn by ``window`` (x, fixed, config: one sampler call) in a window of the context's length
    that ends with it. A block-diffusion model never lets a block see more than the
    ``block_size - diffusion_block`` tokens before it, so each window is the model's own
    context; each sampler call (and its callback's steps) covers one block."""
    block, context, length = text_model.diffusion_block, text_model.block_size, x.shape[1]
    if block is None:
        raise ValueError(
            f"{length} tokens exceed the model's block size {context}: a whole-sequence model "
            "generates at most that many at once; a block-diffusion model (diffusion_block) "
            "generates any length, block by block"
        )
    if config.block_size is not None:
        raise ValueError(
            f"block_size applies to texts of at most the model's {context} tokens; beyond that a "
            "block-diffusion model generates on its own blocks"
        )
    blocks = math.ceil(length / block)
    if config.steps % blocks:
        raise ValueError(
            f"{config.steps} steps cannot be shared evenly among {blocks} blocks of {block} "
            f"tokens: use a multiple of {blocks}"
        )
    each = dataclasses.replace(config, steps=config.steps // blocks)
    x = x.clone()
    for lo in range(0, length, block):
        hi = min(length, lo + block)
        if not bool((x[:, lo:hi] == text_model.mask_id).any()):
            continue  # all fixed: nothing to draw
        start = max(0, lo + block - context)
        x[:, start:hi] = window(x[:, start:hi], fixed[:, start:hi], each)
    return x


@torch.no_grad()
def generate(
    text_model: TextModel,
    templates: Sequence[str],
    config: SampleConfig = SampleConfig(),
    *,
    seed: int = 0,
    progress: bool = False,
    callback: Callback | None = None,
) -> list[Generated]:
    """Generate one text per template ("" = unprompted), in order. A diffusion model fills
    every ``[MASK*n]`` span and continues up to ``config.length`` tokens (a block-diffusion
    model also past its block size, block by block); the autoregressive peer continues
    prefixes only. The same seed, templates and config give the same texts."""
    if not templates:
        raise ValueError("no templates: pass [''] * n for n unprompted texts")
    tok = text_model.tokenizer
    device = next(text_model.model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    if text_model.kind == "autoregressive":
        return _generate_causal(text_model, templates, config, generator, progress)
    parsed = [parse_template(t, tok, length=config.length) for t in templates]
    if config.length is None and len({len(p.tokens) for p in parsed}) > 1:
        order = sorted(range(len(parsed)), key=lambda i: len(parsed[i].tokens))
    else:
        order = list(range(len(parsed)))
    out: dict[int, Generated] = {}
    was_training = text_model.model.training
    text_model.model.eval()
    chunks = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    try:
        for chunk in tqdm(chunks, desc="sample", unit="batch", disable=not progress):
            # one length per sampler call: split the chunk where the length changes
            for length in sorted({len(parsed[i].tokens) for i in chunk}):
                rows = [i for i in chunk if len(parsed[i].tokens) == length]
                x, fixed = stack_templates([parsed[i] for i in rows])
                x, fixed = x.to(device), fixed.to(device)
                tokens = _sample_diffusion(text_model, x, fixed, config, generator, callback)
                for i, row in zip(rows, tokens.cpu(), strict=True):
                    prompt = templates[i] or None
                    out[i] = Generated(i, _decode(tok, row), prompt, row)
    finally:
        text_model.model.train(was_training)
    return [out[i] for i in range(len(templates))]


def _generate_causal(
    text_model: TextModel,
    templates: Sequence[str],
    config: SampleConfig,
    generator: torch.Generator,
    progress: bool,
) -> list[Generated]:
    tok = text_model.tokenizer
    length = config.length or text_model.block_size
    prefixes = []
    for t in templates:
        if SPAN.search(t):
            raise ValueError(
                f"template {t!r}: an autoregressive model only continues a prefix; infilling "
                "[MASK] spans needs a diffusion model"
            )
        parsed = parse_template(t, tok, length=length)
        prefixes.append(parsed.tokens[parsed.fixed])
    device = next(text_model.model.parameters()).device
    out = []
    for lo in tqdm(range(0, len(prefixes), config.batch_size), disable=not progress, desc="sample"):
        group = list(range(lo, min(lo + config.batch_size, len(prefixes))))
        for p in sorted({len(prefixes[i]) for i in group}):
            rows = [i for i in group if len(prefixes[i]) == p]
            prefix = torch.stack([prefixes[i] for i in rows]).to(device)
            tokens = sample_causal(
                text_model.model, prefix, length, start=start_id(tok), banned=banned_ids(tok, generating=True),
                temperature=config.temperature, top_p=config.top_p, generator=generator,
            )  # fmt: skip
            out += [
                Generated(i, _decode(tok, r), templates[i] or None, r)
                for i, r in zip(rows, tokens.cpu(), strict=True)
            ]
    return sorted(out, key=lambda g: g.index)
