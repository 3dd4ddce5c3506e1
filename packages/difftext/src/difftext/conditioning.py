"""Prompts and guidance: which tokens are given, which are generated, and how hard to follow them.

Template syntax (prefix continuation and infilling of arbitrary spans share it)::

    "To be, or [MASK*20] to be"   # 20 tokens to generate between two fixed pieces
    "ROMEO: [MASK]"               # one token
    "Once upon a time"            # no span: with a length, the text continues after it

``[MASK*n]`` stands for n *tokens* (characters, for a character tokenizer). Everything else is
fixed and comes back verbatim. With ``length`` set, masks are appended up to ``length`` tokens
(continuation); without it the template is filled as it is (infilling).

Classifier-free guidance on the prompt (LLaDA, Nie et al. 2025, https://arxiv.org/abs/2502.09992):
the unconditional model is the same network with the prompt masked out, so no extra training is
needed; guided logits are ``u + w (c - u)`` through ``diffcore.denoisers.guidance``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from diffcore.denoisers import guidance
from diffcore.denoisers.protocols import TokenDenoiser
from difftext.tokenizer import banned_ids

__all__ = ["SPAN", "Template", "parse_template", "prompt_guidance"]

SPAN = re.compile(r"\[MASK(?:\*(\d+))?\]")


@dataclass(frozen=True)
class Template:
    """A template as tokens. tokens: (L,) long, the tokenizer's mask id where a token is to be
    generated; fixed: (L,) bool, True at given tokens; text: the template as written."""

    tokens: Tensor
    fixed: Tensor
    text: str


def _encode_piece(piece: str, tokenizer: PreTrainedTokenizerBase, template: str) -> list[int]:
    ids = tokenizer(piece, add_special_tokens=False, verbose=False)["input_ids"]
    unk = tokenizer.unk_token_id
    forbidden = set(banned_ids(tokenizer))
    for token in ids:
        if token == unk:
            unknown = sorted({c for c in piece if tokenizer.convert_tokens_to_ids(c) == unk})
            raise ValueError(
                f"template {template!r}: {''.join(unknown) or piece!r} is not in the tokenizer's "
                "vocabulary, so it cannot be kept verbatim"
            )
        if token in forbidden:
            raise ValueError(
                f"template {template!r} writes out the special token "
                f"{tokenizer.convert_ids_to_tokens(token)!r}; mark spans to generate as "
                "[MASK] or [MASK*n]"
            )
    return ids


def parse_template(
    text: str, tokenizer: PreTrainedTokenizerBase, *, length: int | None = None
) -> Template:
    """Tokenize a template (see the module docstring). length: total tokens; masks are
    appended after the template to reach it (an error if the template is longer)."""
    if not isinstance(text, str):
        raise TypeError(f"a template must be a string, got {type(text).__name__}")
    mask_id = tokenizer.mask_token_id
    if mask_id is None:
        raise ValueError("the tokenizer has no mask token; templates need one")
    tokens: list[int] = []
    fixed: list[bool] = []
    cursor = 0
    for match in SPAN.finditer(text):
        piece = _encode_piece(text[cursor : match.start()], tokenizer, text)
        count = int(match.group(1) or 1)
        if count < 1:
            raise ValueError(f"template {text!r}: {match.group(0)} asks for no tokens")
        tokens += [*piece, *[mask_id] * count]
        fixed += [True] * len(piece) + [False] * count
        cursor = match.end()
    if "[MASK" in text[cursor:]:
        at = text.index("[MASK", cursor)
        raise ValueError(
            f"template {text!r}: malformed span at character {at}; write [MASK] for one token "
            "or [MASK*n] for n tokens"
        )
    tail = _encode_piece(text[cursor:], tokenizer, text)
    tokens += tail
    fixed += [True] * len(tail)
    if length is not None:
        if len(tokens) > length:
            raise ValueError(
                f"template {text!r} is {len(tokens)} tokens, longer than the length {length}"
            )
        fixed += [False] * (length - len(tokens))
        tokens += [mask_id] * (length - len(tokens))
    if all(fixed):
        raise ValueError(
            f"template {text!r} leaves nothing to generate: add [MASK*n] spans or a length "
            "beyond the prompt"
        )
    return Template(torch.tensor(tokens, dtype=torch.long), torch.tensor(fixed), text)


def prompt_guidance(denoiser: TokenDenoiser, scale: float, fixed: Tensor) -> TokenDenoiser:
    """Classifier-free guidance on the fixed tokens ``fixed`` (B, L) bool: the conditional
    branch sees them, the unconditional one sees them masked (``hide``, see
    ``difftext.model.TextDenoiser``); scale 1 is the plain model (one call, no guidance)."""
    if not scale >= 0.0:
        raise ValueError(f"the guidance scale must be >= 0 (1 = off), got {scale}")
    return guidance(denoiser, scale, {"hide": torch.zeros_like(fixed)}, {"hide": fixed})
