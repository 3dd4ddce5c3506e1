"""Tokenizers: character-level and byte-level BPE trained locally with ``tokenizers``, wrapped as
``transformers.PreTrainedTokenizerFast``, saved to and loaded from a directory; or any local
tokenizer directory through ``AutoTokenizer`` (never from a hub, never with remote code).

Every tokenizer used here needs a mask token (the absorbing state of the diffusion) and a padding
token (the tails of short documents); a start token (BOS, else CLS, else EOS) is needed only by the
autoregressive peer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from diffcore.io import atomic_directory
from diffcore.training import dist_info

__all__ = [
    "SPECIAL_TOKENS",
    "TokenizerKind",
    "banned_ids",
    "check_tokenizer",
    "load_tokenizer",
    "start_id",
    "train_bpe_tokenizer",
    "train_char_tokenizer",
    "train_tokenizer",
]

TokenizerKind = Literal["char", "bpe"]
# Ids 0..4 in every tokenizer trained here, in this order.
SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "mask_token": "[MASK]",
    "bos_token": "[BOS]",
    "eos_token": "[EOS]",
}


def _wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, clean_up_tokenization_spaces=False, **SPECIAL_TOKENS
    )


def train_char_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """One token per character seen in ``texts`` (sorted by code point), after the five special
    tokens; unseen characters become ``[UNK]``. Bits per token are then bits per character."""
    alphabet: set[str] = set()
    for text in texts:
        alphabet.update(text)
    if not alphabet:
        raise ValueError("cannot build a character tokenizer from empty text")
    specials = list(SPECIAL_TOKENS.values())
    vocab = {tok: i for i, tok in enumerate(specials + sorted(alphabet - set(specials)))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    # [\s\S] is "any character" including newlines (the regex engine has no DOTALL flag syntax).
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()  # characters join without separators
    return _wrap(tokenizer)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Byte-level BPE (GPT-2's scheme): every byte is in the base alphabet, so any text encodes
    losslessly and decodes back exactly; ``vocab_size`` counts the special tokens and the 256
    byte tokens."""
    minimum = 256 + len(SPECIAL_TOKENS)
    if not isinstance(vocab_size, int) or vocab_size < minimum:
        raise ValueError(
            f"a byte-level BPE vocabulary needs at least {minimum} tokens (256 bytes + "
            f"{len(SPECIAL_TOKENS)} special), got vocab_size={vocab_size!r}"
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return _wrap(tokenizer)


def train_tokenizer(
    kind: TokenizerKind, texts: Sequence[str], vocab_size: int = 1024
) -> PreTrainedTokenizerFast:
    """``train_char_tokenizer`` or ``train_bpe_tokenizer`` by name."""
    if kind == "char":
        return train_char_tokenizer(texts)
    if kind == "bpe":
        return train_bpe_tokenizer(texts, vocab_size)
    raise ValueError(f"tokenizer kind must be 'char' or 'bpe' (or a directory), got {kind!r}")


def check_tokenizer(tokenizer: Any, where: str = "the tokenizer") -> PreTrainedTokenizerBase:
    """The tokenizer, after checking it can serve a masked diffusion model (mask and padding)."""
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise TypeError(f"{where} must be a transformers tokenizer, got {type(tokenizer).__name__}")
    for role in ("mask_token", "pad_token"):
        if getattr(tokenizer, f"{role}_id") is None:
            raise ValueError(
                f"{where} has no {role}; masked diffusion needs one (the mask token is the "
                f"absorbing state, padding fills short documents). Add it with "
                f"tokenizer.add_special_tokens({{'{role}': ...}}) and save the tokenizer again"
            )
    return tokenizer


def load_tokenizer(directory: str | os.PathLike) -> PreTrainedTokenizerBase:
    """A tokenizer saved in a local directory (``save_pretrained``), through ``AutoTokenizer``,
    offline and without remote code."""
    path = Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory {path} does not exist")
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=False
        )
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} holds no tokenizer that AutoTokenizer can read: {err}") from err
    return check_tokenizer(tokenizer, f"the tokenizer in {path}")


def start_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token that starts every sequence of the autoregressive peer: BOS, else CLS, else EOS."""
    for role in ("bos_token_id", "cls_token_id", "eos_token_id"):
        value = getattr(tokenizer, role, None)
        if value is not None:
            return int(value)
    raise ValueError(
        "the tokenizer has no BOS, CLS or EOS token; the autoregressive peer needs one to start "
        "its sequences"
    )


def banned_ids(tokenizer: PreTrainedTokenizerBase, *, generating: bool = False) -> list[int]:
    """Tokens that never appear inside text: padding, mask, BOS and CLS (EOS and SEP stay
    allowed: they separate packed documents). generating: also UNK, which text can hold (a
    character outside the vocabulary, so it is scored) but which no sample should contain."""
    roles = ("pad", "mask", "bos", "cls", *(("unk",) if generating else ()))
    ids = {getattr(tokenizer, f"{r}_token_id", None) for r in roles}
    return sorted(int(i) for i in ids if i is not None)


def run_tokenizer(
    spec: str, texts: Sequence[str], run_dir: str | os.PathLike, *, vocab_size: int = 1024
) -> PreTrainedTokenizerBase:
    """The tokenizer of a training run in ``run_dir``: the one saved there by an earlier call (a
    resumed run keeps its tokens), else one trained on ``texts`` (``spec`` "char" or "bpe", with
    ``vocab_size``) or loaded from the folder ``spec``, saved as ``run_dir/tokenizer``.

    The folder appears complete or not at all (a killed run leaves no half tokenizer). Under
    torchrun rank 0 makes and saves it while the other ranks wait for it and load it: every
    rank then holds the same tokens, and one process writes."""
    saved = Path(run_dir) / "tokenizer"
    if saved.is_dir():
        return load_tokenizer(saved)
    if not dist_info().is_main:
        return load_tokenizer(wait_for_folder(saved))
    if spec in ("char", "bpe"):
        tokenizer = train_tokenizer(spec, texts, vocab_size)
    else:
        tokenizer = load_tokenizer(spec)
    with atomic_directory(saved) as tmp:
        tokenizer.save_pretrained(tmp)
    return tokenizer


def wait_for_folder(folder: Path, *, timeout: float = 3600.0, poll: float = 0.1) -> Path:
    """``folder`` once it exists (another process renames it into place), polling every
    ``poll`` seconds; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not folder.is_dir():
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"waited {timeout:.0f} s for rank 0 to save {folder}; did rank 0 fail?"
            )
        time.sleep(poll)
    return folder
