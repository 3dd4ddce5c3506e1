"""Quality of a text model and of its samples.

- likelihood: the diffusion model's NLL upper bound (``MaskProcess.nll_bound``, LLaDA's
  low-variance form of the MDLM ELBO) and the autoregressive peer's exact NLL, on the same blocks,
  in nats and bits per token and bits per character;
- generative perplexity: exp of the mean NLL per token that a judge (the autoregressive peer)
  gives the samples, re-tokenized by the judge (MDLM's protocol with GPT-2 as the judge);
- unigram entropy: the entropy of each sample's token counts, averaged over samples; it falls
  when a model collapses onto repeated tokens (MDLM/ReMDM report it beside generative
  perplexity, which alone rewards repetition);
- word share: the share of generated words that occur in the training text (case-insensitive).
  Words touching either end of a sample are left out: blocks start and end mid-word.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from diffcore.processes import MaskProcess
from difftext.autoregressive import causal_token_nll
from difftext.data import TokenBlocks
from difftext.model import TextModel
from difftext.tokenizer import start_id

__all__ = [
    "Likelihood",
    "SampleReport",
    "causal_nll",
    "diffusion_nll_bound",
    "evaluate_samples",
    "generative_perplexity",
    "unigram_entropy",
    "word_share",
    "words_of",
]

WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")  # letters, with inner apostrophes (o'er, 'tis)


@dataclass(frozen=True)
class Likelihood:
    """Negative log-likelihood of a set of blocks. bound: True for the diffusion model's upper
    bound, False for an exact autoregressive NLL."""

    nats_per_token: float
    bits_per_token: float
    bits_per_char: float
    tokens: int
    characters: int
    bound: bool

    @classmethod
    def from_total(cls, nats: float, tokens: int, characters: int, bound: bool) -> Likelihood:
        return cls(
            nats / tokens,
            nats / tokens / math.log(2),
            nats / characters / math.log(2),
            tokens,
            characters,
            bound,
        )


def _batches(blocks: TokenBlocks, batch_size: int, progress: bool, desc: str):
    if len(blocks) == 0:
        raise ValueError("no blocks to evaluate")
    starts = range(0, len(blocks), batch_size)
    for lo in tqdm(starts, desc=desc, unit="batch", disable=not progress, leave=False):
        yield blocks.subset(slice(lo, lo + batch_size))


@torch.no_grad()
def diffusion_nll_bound(
    text_model: TextModel,
    blocks: TokenBlocks,
    *,
    samples: int = 16,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = False,
) -> Likelihood:
    """Monte-Carlo upper bound on the NLL of ``blocks`` under the diffusion model (``samples``
    mask draws per block, stratified); deterministic given ``seed``. Not for a substitution
    model: the masked ELBO bounds the likelihood of a model trained on masks only."""
    if text_model.substitution is not None:
        raise ValueError(
            "a substitution model has no likelihood bound (the masked-diffusion ELBO is a bound "
            "for masked models only); judge its samples by generative perplexity instead"
        )
    denoiser = text_model.denoiser()
    process = MaskProcess(
        text_model.mask_id, text_model.vocab_size, block=text_model.diffusion_block
    )
    device = next(text_model.model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    total, tokens = 0.0, 0
    for part in _batches(blocks, batch_size, progress, "nll bound"):
        x0, counted = part.tokens.to(device), part.counted.to(device)
        attention = counted.long() if not bool(counted.all()) else None
        per_token = process.nll_bound(
            denoiser,
            x0,
            generator=generator,
            samples=samples,
            loss_mask=counted,
            attention_mask=attention,
        )
        total += float((per_token * counted.sum(1)).sum())
        tokens += int(counted.sum())
    return Likelihood.from_total(total, tokens, int(blocks.characters.sum()), bound=True)


@torch.no_grad()
def causal_nll(
    text_model: TextModel, blocks: TokenBlocks, *, batch_size: int = 32, progress: bool = False
) -> Likelihood:
    """Exact NLL of ``blocks`` under the autoregressive peer (each block read from BOS)."""
    model, start = text_model.model, start_id(text_model.tokenizer)
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    for part in _batches(blocks, batch_size, progress, "nll"):
        nll = causal_token_nll(model, part.tokens.to(device), start=start, pad_id=blocks.pad_id)
        total += float(nll.double().sum())
        tokens += int(part.counted.sum())
    return Likelihood.from_total(total, tokens, int(blocks.characters.sum()), bound=False)


@torch.no_grad()
def generative_perplexity(judge: TextModel, texts: Sequence[str], *, batch_size: int = 16) -> float:
    """exp(mean NLL per token) of ``texts`` under the causal LM ``judge``, each text tokenized by
    the judge (truncated to its block size) and read from BOS."""
    if judge.kind != "autoregressive":
        raise ValueError("the judge of generative perplexity must be an autoregressive model")
    tok = judge.tokenizer
    rows = [
        tok(t, add_special_tokens=False, verbose=False)["input_ids"][: judge.block_size]
        for t in texts
    ]
    rows = [r for r in rows if r]
    if not rows:
        raise ValueError("no non-empty texts to judge")
    device = next(judge.model.parameters()).device
    total, count = 0.0, 0
    for lo in range(0, len(rows), batch_size):
        part = rows[lo : lo + batch_size]
        width = max(len(r) for r in part)
        ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in part], device=device)
        nll = causal_token_nll(judge.model, ids, start=start_id(tok), pad_id=tok.pad_token_id)
        total += float(nll.double().sum())
        count += sum(len(r) for r in part)
    return math.exp(total / count)


def unigram_entropy(texts: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> float:
    """Mean over texts of the entropy (bits) of each text's token frequencies."""
    values = []
    for text in texts:
        counts = Counter(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        n = sum(counts.values())
        if n:
            values.append(-sum(c / n * math.log2(c / n) for c in counts.values()))
    if not values:
        raise ValueError("no non-empty texts to measure")
    return sum(values) / len(values)


def words_of(text: str, *, interior: bool = False) -> list[str]:
    """Lower-cased words of ``text``; interior=True leaves out words touching either end."""
    return [
        m.group(0).lower()
        for m in WORD.finditer(text)
        if not interior or (m.start() > 0 and m.end() < len(text))
    ]


def word_share(texts: Iterable[str], vocabulary: set[str]) -> tuple[float, int]:
    """(share of the interior words of ``texts`` found in ``vocabulary``, number of words)."""
    words = [w for text in texts for w in words_of(text, interior=True)]
    if not words:
        return math.nan, 0
    return sum(w in vocabulary for w in words) / len(words), len(words)


@dataclass(frozen=True)
class SampleReport:
    """generative_perplexity: under the judge (nan without one); unigram_entropy: bits;
    word_share: of ``words`` interior words (nan without a reference text)."""

    samples: int
    generative_perplexity: float
    unigram_entropy: float
    word_share: float
    words: int


def evaluate_samples(
    texts: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    *,
    judge: TextModel | None = None,
    reference: Iterable[str] = (),
    batch_size: int = 16,
) -> SampleReport:
    """All sample metrics at once; ``reference``: the training texts (for the word share)."""
    vocabulary = {w for text in reference for w in words_of(text)}
    share, words = word_share(texts, vocabulary) if vocabulary else (math.nan, 0)
    gen_ppl = (
        generative_perplexity(judge, texts, batch_size=batch_size)
        if judge is not None
        else math.nan
    )
    return SampleReport(len(texts), gen_ppl, unigram_entropy(texts, tokenizer), share, words)
