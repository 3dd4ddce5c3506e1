"""The public API for generation: :class:`TextPipeline` samples texts (optionally after a
prompt), infills ``[MASK*n]`` spans of templates and edits (partially re-noises) texts, and
writes JSONL. Sampler, steps, guidance, seeds and batching: ``diffcore.generation``.

```python
pipe = TextPipeline.from_pretrained("runs/shakespeare/model")
texts = pipe.sample(4, prompt="ROMEO:", length=128, steps=64, seed=0)     # strings
filled = pipe.infill(["To be, or [MASK*20] to be"])
pipe.save(texts, "samples.jsonl")
```

Templates fix any span of tokens (``difftext.conditioning``): prefix continuation and infilling
are one operation. A substitution model (``TextModel.corruption``) fills the same ``[MASK]``
positions by refinement (the "substitute" sampler, its default): they start as random tokens
and are corrected step by step, the fixed tokens read as context. The autoregressive peer (a
``TextModel`` of kind "autoregressive") samples through the same ``sample`` (prompts as
prefixes) with its own ancestral sampling.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Unpack

import torch
from torch import Tensor

from diffcore.generation import (
    Run,
    Sampling,
    TokenOptions,
    TokenPipeline,
    mask_experts,
    remask,
)
from diffcore.processes.substitution import SubstitutionProcess
from diffcore.samplers import Callback
from diffcore.seeding import SampleGenerators
from difftext.autoregressive import sample_causal
from difftext.conditioning import SPAN, parse_template, prompt_guidance
from difftext.model import TextModel, load_text_model, save_text_model
from difftext.tokenizer import banned_ids, start_id

__all__ = ["TextPipeline"]


class TextPipeline(TokenPipeline):
    """A trained :class:`TextModel` ready to generate; outputs are strings (special tokens
    kept, so a fixed-length sample shows where its text ended)."""

    default_batch_size = 16

    def __init__(
        self, text_model: TextModel, *, experts: Sequence[Any] = (), **options: Any
    ) -> None:
        """experts: models (or their folders) trained on the other ranges of masked shares
        (``TextModel.mask_range``); with ``text_model`` they must cover [0, 1], and each step
        goes to the model that learned its share (experts per noise level)."""
        super().__init__(text_model.model, **options)
        self.text_model = text_model
        self.tokenizer = text_model.tokenizer
        self.experts = [
            load_text_model(e, device=self.device) if isinstance(e, (str, Path)) else e
            for e in experts
        ]
        for e in self.experts:
            e.model.to(self.device).eval()
            same = (e.kind, e.diffusion_block, e.corruption) == (
                "diffusion",
                text_model.diffusion_block,
                text_model.corruption,
            )
            if not same or e.tokenizer.get_vocab() != self.tokenizer.get_vocab():
                raise ValueError(
                    "experts must be masked diffusion models of the same kind, blocks and "
                    "tokenizer as the pipeline's model"
                )
        models = [text_model, *self.experts]
        mask_experts([m.model for m in models], [m.mask_range for m in models])  # they tile

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, device: str | torch.device = "cpu", **options: Any
    ) -> TextPipeline:
        """A model folder written by ``save_pretrained`` (or a training run's ``model/``);
        ``experts``: see the constructor."""
        return cls(load_text_model(directory, device=device), device=device, **options)

    @property
    def time_independent(self) -> bool:  # type: ignore[override]
        # experts answer by the step's time: logits of one step are not another's
        return not self.experts

    def save_pretrained(self, directory: str | Path) -> Path:
        return save_text_model(self.text_model, directory)

    @property
    def mask_id(self) -> int:
        return self.text_model.mask_id

    @property
    def diffusion_block(self) -> int | None:
        return self.text_model.diffusion_block

    @property
    def substitution(self) -> SubstitutionProcess | None:
        return self.text_model.substitution

    def plan(self, sampling: Mapping[str, Any]) -> tuple[TokenOptions, Run]:
        """The base plan, refusing guidance for a substitution model."""
        plan, run = super().plan(sampling)
        if plan.guidance != 1.0 and self.substitution is not None:
            # the unconditional branch hides the prompt behind [MASK] tokens (prompt_guidance),
            # an input a substitution model never saw in training
            raise ValueError(
                f"guidance {plan.guidance} needs a masked model; a substitution model samples "
                "with guidance 1"
            )
        return plan, run

    def batch_key(self, masked: Tensor) -> tuple:
        # past the model's context, generation goes window by window: rows batched together
        # must then share every window's layout, so the whole layout is the key
        if len(masked) > self.text_model.block_size:
            return (len(masked), tuple(masked.tolist()))
        return super().batch_key(masked)

    def denoiser(self, x: Tensor, conditions: Mapping[str, Tensor], scale: float) -> Any:
        models = [self.text_model, *self.experts]
        denoiser = mask_experts(
            [m.denoiser(generating=True) for m in models], [m.mask_range for m in models]
        )
        fixed = conditions["fixed"]
        if scale != 1.0 and bool(fixed.any()):
            denoiser = prompt_guidance(denoiser, scale, fixed)
        return denoiser

    # the public API

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        prompt: str | Sequence[str] | None = None,
        length: int | None = None,
        **sampling: Unpack[Sampling],
    ) -> list[str]:
        """``n`` texts of ``length`` tokens (default: the model's block size; a block-diffusion
        model goes past it, block by block), each continuing ``prompt`` (one for all, or one per
        text; a prompt may hold ``[MASK*n]`` spans). steps: None = one per generated token."""
        self.check_count(n)
        prompts = [prompt or ""] * n if prompt is None or isinstance(prompt, str) else list(prompt)
        if len(prompts) != n:
            raise ValueError(f"got {len(prompts)} prompts for {n} texts")
        length = length or self.text_model.block_size
        if self.text_model.kind == "autoregressive":
            given = (sampling.get("sampler"), sampling.get("steps"), sampling.get("guidance", 1.0))
            if given != (None, None, 1.0):
                raise ValueError(
                    "an autoregressive model draws one token per pass, left to right: sampler, "
                    "steps and guidance do not apply to it"
                )
            if length > self.text_model.block_size:
                raise ValueError(
                    f"length {length} exceeds the autoregressive model's block size "
                    f"{self.text_model.block_size}"
                )
            options = sampling.get("options") or {}
            accepted = {"temperature", "top_p"}
            if set(options) - accepted:
                raise ValueError(
                    f"an autoregressive model takes only the options {sorted(accepted)}, got "
                    f"{sorted(options)}"
                )
            _, run = self.plan(sampling)
            return self._sample_causal(prompts, length, options, run["seed"], run["batch_size"])
        rows = [parse_template(p, self.tokenizer, length=length).tokens for p in prompts]
        plan, run = self.plan(sampling)
        return self._decode(self.fill(rows, plan=plan, **run))

    @torch.no_grad()
    def infill(
        self,
        templates: Sequence[str],
        **sampling: Unpack[Sampling],
    ) -> list[str]:
        """Fill the ``[MASK]`` / ``[MASK*n]`` spans of each template, keeping the rest."""
        self._check_diffusion("infilling")
        rows = [parse_template(t, self.tokenizer).tokens for t in templates]
        plan, run = self.plan(sampling)
        return self._decode(self.fill(rows, plan=plan, **run))

    @torch.no_grad()
    def edit(
        self,
        texts: Sequence[str],
        strength: float | Sequence[float] = 0.5,
        **sampling: Unpack[Sampling],
    ) -> list[str]:
        """Partial re-noising: mask a random ``strength`` share of each text's tokens (by each
        text's own seed; one strength for all, or one per text) and regenerate them, keeping
        the rest."""
        self._check_diffusion("editing")
        tokens = [self.encode(t) for t in texts]
        plan, run = self.plan(sampling)
        rows = remask(tokens, strength, self.mask_id, seed=run["seed"])
        return self._decode(self.fill(rows, plan=plan, **run))

    @staticmethod
    def save(texts: Sequence[str], path: str | Path, **fields: Any) -> Path:
        """Write one JSON object per line: ``{"index": i, "text": ..., **fields}``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [
            json.dumps({"index": i, "text": t, **fields}, ensure_ascii=False)
            for i, t in enumerate(texts)
        ]
        tmp = path.with_name(f".tmp-{path.name}")
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        tmp.replace(path)
        return path

    # the loop

    def sample_batch(
        self,
        x: Tensor,
        conditions: Mapping[str, Tensor],
        plan: TokenOptions,
        generators: SampleGenerators,
        bar: Any,
        callback: Callback | None,
    ) -> Tensor:
        """One batch; a text longer than the model's context goes block by block, each block
        drawn in a window of the context's length that ends with it (a block-diffusion model
        never lets a block see more than ``block_size - diffusion_block`` tokens before it, so
        each window is the model's own context)."""
        conditions = {"fixed": x != self.mask_id, **conditions}
        context, length = self.text_model.block_size, x.shape[1]
        if length <= context:
            return super().sample_batch(x, conditions, plan, generators, bar, callback)
        block = self.diffusion_block
        if block is None:
            raise ValueError(
                f"{length} tokens exceed the model's block size {context}: a whole-sequence "
                "model generates at most that many at once; a block-diffusion model "
                "(diffusion_block) generates any length, block by block"
            )
        if "block_size" in plan.options:
            raise ValueError(
                f"block_size applies to texts of at most the model's {context} tokens; beyond "
                "that a block-diffusion model generates on its own blocks"
            )
        blocks = math.ceil(length / block)
        steps = None if plan.steps is None else math.ceil(plan.steps / blocks)
        each = dataclasses.replace(plan, steps=steps)
        x = x.clone()
        for lo in range(0, length, block):
            hi = min(length, lo + block)
            if not bool((x[:, lo:hi] == self.mask_id).any()):
                continue  # all fixed: nothing to draw
            start = max(0, lo + block - context)
            window = {k: v[:, start:hi] for k, v in conditions.items()}
            x[:, start:hi] = super().sample_batch(
                x[:, start:hi], window, each, generators, bar, callback
            )
        return x

    def _check_diffusion(self, what: str) -> None:
        if self.text_model.kind != "diffusion":
            raise ValueError(
                f"{what} needs a diffusion model; an autoregressive model only continues a prefix"
            )

    def encode(self, text: str) -> Tensor:
        """The token ids (L,) of ``text`` (no special tokens); ValueError on unknown characters."""
        ids = self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        if self.tokenizer.unk_token_id in ids:
            raise ValueError(f"text {text[:40]!r}... holds characters the tokenizer does not know")
        return torch.tensor(ids, dtype=torch.long)

    def _decode(self, rows: Sequence[Tensor]) -> list[str]:
        return [
            self.tokenizer.decode(
                row.tolist(), skip_special_tokens=False, clean_up_tokenization_spaces=False
            )
            for row in rows
        ]

    def _sample_causal(
        self,
        prompts: list[str],
        length: int,
        options: Mapping[str, Any],
        seed: int,
        batch_size: int,
    ) -> list[str]:
        """The autoregressive peer: each prompt is a prefix, continued one token per pass."""
        tok = self.tokenizer
        prefixes = []
        for p in prompts:
            if SPAN.search(p):
                raise ValueError(
                    f"prompt {p!r}: an autoregressive model only continues a prefix; infilling "
                    "[MASK] spans needs a diffusion model"
                )
            parsed = parse_template(p, tok, length=length)
            prefixes.append(parsed.tokens[parsed.fixed])
        generators = self.generators(seed, len(prompts))
        order = sorted(range(len(prompts)), key=lambda i: len(prefixes[i]))
        out: list[Tensor | None] = [None] * len(prompts)
        for lo in range(0, len(order), batch_size):
            group = order[lo : lo + batch_size]
            for size in sorted({len(prefixes[i]) for i in group}):
                rows = [i for i in group if len(prefixes[i]) == size]
                prefix = torch.stack([prefixes[i] for i in rows]).to(self.device)
                tokens = sample_causal(
                    self.model,
                    prefix,
                    length,
                    start=start_id(tok),
                    banned=banned_ids(tok, generating=True),
                    generator=SampleGenerators(generators=[generators[i] for i in rows]),
                    **options,
                )
                for i, row in zip(rows, tokens.cpu(), strict=True):
                    out[i] = row
        return self._decode(out)
