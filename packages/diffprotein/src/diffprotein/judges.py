"""Models that score samples: an autoregressive peer and a family classifier.

- ``ProteinLM``: the same ESM transformer as the denoiser (same ``EsmShape``), made causal, trained
  left to right on the same data with the same budget. It is both the *likelihood peer* (its
  held-out NLL against the diffusion model's bound) and the *perplexity judge* (the perplexity
  of samples, against that of held-out natural sequences; as GPT-2 judges text diffusion).
- ``FamilyClassifier``: an ESM encoder with a classification head over the families plus
  ``"other"``, trained on real sequences. "other" holds shuffled family sequences (right
  composition, no order) and, if given, background proteins, so a sample has to look like a
  real member of a family, not just have its composition, to be credited to it.

Both train through diffcore's loop and save through diffcore.io.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from diffcore.training import TrainConfig, TrainResult, train
from diffprotein.alphabet import (
    BASE_VOCAB_SIZE,
    EOS_ID,
    INPUT_RESIDUE_IDS,
    PAD_ID,
    X_ID,
    decode,
    encode,
)
from diffprotein.conditioning import family_ids
from diffprotein.data import ProteinRecord
from diffprotein.model import BANNED_LOGIT, EsmShape, wrap_sequences
from diffprotein.training import SequenceDataset, collate

__all__ = [
    "OTHER",
    "FamilyClassifier",
    "classifier_dataset",
    "family_labels",
    "generate",
    "lm_loss",
    "FamilyClassifierConfig",
    "ProteinLM",
    "ProteinLMConfig",
    "classify",
    "perplexity",
    "train_classifier",
    "train_lm",
]

OTHER = "other"  # the classifier's label for "no family it knows"


@dataclass(frozen=True)
class ProteinLMConfig(EsmShape):
    """A left-to-right protein language model of the given shape, family-conditioned."""

    families: tuple[str, ...] = ()  # first token <family:NAME> (or <cls> for none)


class ProteinLM(nn.Module):
    """``lm(x, family) -> logits (B, L + 1, 33)``: position i predicts residue i + 1 (the last
    predicts ``<eos>``) from the family token and residues 1..i. x: (B, L) residues with
    trailing ``<pad>``; family: (B,) index, -1 = none."""

    config_class: ClassVar[type] = ProteinLMConfig

    def __init__(self, config: ProteinLMConfig) -> None:
        super().__init__()
        from transformers import EsmForMaskedLM
        from transformers.utils import logging as transformers_logging

        self.config = config
        esm_config = config.esm_config(
            BASE_VOCAB_SIZE + len(config.families), is_decoder=True, use_cache=False
        )
        # is_decoder makes ESM's attention causal (each layer reads it when it is built). The
        # masked-LM class logs a warning about it, which is silenced: causal is what we want.
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()
        try:
            self.esm = EsmForMaskedLM(esm_config)
        finally:
            transformers_logging.set_verbosity(verbosity)
        allowed = torch.zeros(BASE_VOCAB_SIZE, dtype=torch.bool)
        allowed[[*INPUT_RESIDUE_IDS, EOS_ID]] = True
        self.register_buffer("_allowed", allowed, persistent=False)

    def forward(self, x: Tensor, family: Tensor | None = None) -> Tensor:
        first = _first_tokens(family, x, len(self.config.families))
        full, attention = wrap_sequences(x, first)
        logits = self.esm(input_ids=full, attention_mask=attention.long()).logits
        logits = logits[:, : x.shape[1] + 1, :BASE_VOCAB_SIZE].float()
        return logits.masked_fill(~self._allowed, BANNED_LOGIT)

    def token_nll(self, x: Tensor, family: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """-log p per predicted token (B, L + 1) (residues, then <eos>) and its mask."""
        return _next_token_nll(self(x, family), x)


def _next_token_nll(logits: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """-log p (B, L + 1) of each next token (residues, then <eos>) from ``ProteinLM`` logits,
    and the mask of positions that have one."""
    full, attention = wrap_sequences(x, torch.zeros(x.shape[0], dtype=torch.long))
    target, counted = full[:, 1:], attention[:, 1:]
    nll = F.cross_entropy(logits.transpose(1, 2), target.masked_fill(~counted, 0), reduction="none")
    return nll.masked_fill(~counted, 0.0), counted


def _first_tokens(family: Tensor | None, x: Tensor, n: int) -> Tensor:
    if family is None:
        return torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    family = family.to(x.device).long()
    if bool(((family < -1) | (family >= n)).any()):
        raise ValueError(f"family indices must lie in [-1, {n}), got {family.tolist()}")
    return torch.where(family < 0, 0, BASE_VOCAB_SIZE + family)


def lm_loss(model: Any, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
    """Mean next-token NLL of a batch: the peer's training loss (diffcore's loss signature)."""
    # call the (possibly DDP-wrapped) model itself, so DDP sees the forward pass
    nll, counted = _next_token_nll(model(batch["tokens"], batch["family"]), batch["tokens"])
    return nll.sum() / counted.sum()


def train_lm(
    model: ProteinLM,
    records: Sequence[ProteinRecord],
    config: TrainConfig,
    out_dir: str | Path,
    **train_kwargs: Any,
) -> TrainResult:
    """Train the autoregressive peer on ``records`` with diffcore's loop."""
    data = SequenceDataset(records, model.config.families, model.config.max_length)
    return train(model, lm_loss, data, config, out_dir=out_dir, collate_fn=collate, **train_kwargs)


@torch.no_grad()
def perplexity(
    model: ProteinLM,
    records: Sequence[ProteinRecord],
    *,
    conditional: bool = True,
    batch_size: int = 64,
) -> float:
    """exp(mean NLL per token) of ``records`` (residues and <eos>), given each record's family
    when ``conditional`` and the model knows it."""
    model.eval()
    device = next(model.parameters()).device
    families = model.config.families if conditional else ()
    data = SequenceDataset(records, families, model.config.max_length)
    total, count = 0.0, 0
    for start in range(0, len(data), batch_size):
        batch = collate([data[i] for i in range(start, min(len(data), start + batch_size))])
        nll, counted = model.token_nll(batch["tokens"].to(device), batch["family"].to(device))
        total += float(nll.sum())
        count += int(counted.sum())
    return math.exp(total / count)


@torch.no_grad()
def generate(
    model: ProteinLM,
    n: int,
    *,
    family: str | None = None,
    max_length: int | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
) -> list[str]:
    """``n`` sequences drawn left to right (ancestral sampling) until ``<eos>`` or
    ``max_length`` residues (default: the model's); ``X`` is never drawn."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    model.eval()
    device = next(model.parameters()).device
    limit = max_length or model.config.max_length
    fam = family_ids([family], model.config.families).to(device)
    g = torch.Generator(device=device).manual_seed(seed)
    out: list[str] = []
    for start in range(0, n, batch_size):
        rows = min(batch_size, n - start)
        x = torch.full((rows, limit), PAD_ID, dtype=torch.long, device=device)
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        for t in range(limit):
            logits = model(x[:, :t], fam.expand(rows))[:, t]
            logits[:, X_ID] = BANNED_LOGIT
            if t == 0:
                logits[:, EOS_ID] = BANNED_LOGIT  # at least one residue
            probs = torch.softmax(logits.double() / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=g).squeeze(1)
            done |= token == EOS_ID
            x[:, t] = torch.where(done, PAD_ID, token)
            if bool(done.all()):
                break
        out.extend(decode(row) for row in x.cpu())
    return out


@dataclass(frozen=True)
class FamilyClassifierConfig(EsmShape):
    """An ESM encoder with a head over ``labels`` (the families, then ``"other"``)."""

    labels: tuple[str, ...] = ()


class FamilyClassifier(nn.Module):
    """``clf(x) -> logits (B, len(labels))`` for residues x (B, L) with trailing ``<pad>``:
    an ESM encoder, the mean of its outputs over the residues, a linear layer. (Mean pooling
    learns faster than reading ``<cls>`` alone, which matters for a judge trained briefly.)"""

    config_class: ClassVar[type] = FamilyClassifierConfig

    def __init__(self, config: FamilyClassifierConfig) -> None:
        super().__init__()
        from transformers import EsmModel

        if len(config.labels) < 2:
            raise ValueError(f"a classifier needs at least 2 labels, got {config.labels}")
        self.config = config
        self.esm = EsmModel(config.esm_config(BASE_VOCAB_SIZE), add_pooling_layer=False)
        self.head = nn.Linear(config.hidden_size, len(config.labels))

    def forward(self, x: Tensor) -> Tensor:
        full, attention = wrap_sequences(x, torch.zeros(x.shape[0], dtype=torch.long))
        hidden = self.esm(input_ids=full, attention_mask=attention.long()).last_hidden_state
        weights = attention[..., None].to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        return self.head(pooled).float()


class _LabelledDataset(Dataset):
    def __init__(self, tokens: list[Tensor], labels: list[int]) -> None:
        self.tokens, self.labels = tokens, labels

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.tokens[i], self.labels[i]


def classifier_loss(model: Any, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
    """Cross-entropy of the family judge's logits against each item's label."""
    return F.cross_entropy(model(batch["tokens"]), batch["family"])


def classifier_dataset(
    records: Sequence[ProteinRecord],
    labels: Sequence[str],
    *,
    background: Sequence[ProteinRecord] = (),
    shuffled: float = 0.5,
    max_length: int = 512,
    seed: int = 0,
) -> Dataset:
    """Items (tokens, label index): family records; "other" = background records (cropped to
    ``max_length``) and residue-shuffled copies of a ``shuffled`` share of family records."""
    g = torch.Generator().manual_seed(seed)
    other = labels.index(OTHER)
    tokens, targets = [], []
    for r in records:
        if r.family not in labels or len(r.sequence) > max_length:
            continue
        t = encode(r.sequence)
        tokens.append(t)
        targets.append(labels.index(r.family))
        if torch.rand((), generator=g) < shuffled:
            tokens.append(t[torch.randperm(len(t), generator=g)])
            targets.append(other)
    for r in background:
        t = encode(r.sequence)
        if len(t) > max_length:
            start = int(torch.randint(len(t) - max_length + 1, (), generator=g))
            t = t[start : start + max_length]
        tokens.append(t)
        targets.append(other)
    if not tokens:
        raise ValueError(f"no records with a family among {list(labels)}")
    return _LabelledDataset(tokens, targets)


def train_classifier(
    model: FamilyClassifier,
    records: Sequence[ProteinRecord],
    config: TrainConfig,
    out_dir: str | Path,
    *,
    background: Sequence[ProteinRecord] = (),
    **train_kwargs: Any,
) -> TrainResult:
    """Train the family judge on real ``records`` (and ``background`` proteins as "other")."""
    data = classifier_dataset(
        records,
        model.config.labels,
        background=background,
        max_length=model.config.max_length,
        seed=config.seed,
    )
    return train(
        model, classifier_loss, data, config, out_dir=out_dir, collate_fn=collate, **train_kwargs
    )


@torch.no_grad()
def classify(model: FamilyClassifier, sequences: Sequence[str], batch_size: int = 128) -> list[str]:
    """The predicted label of each sequence."""
    model.eval()
    device = next(model.parameters()).device
    out: list[str] = []
    for start in range(0, len(sequences), batch_size):
        chunk = [
            encode(s[: model.config.max_length]) for s in sequences[start : start + batch_size]
        ]
        batch = collate([(t, 0) for t in chunk])["tokens"].to(device)
        out.extend(model.config.labels[i] for i in model(batch).argmax(-1).tolist())
    return out


def family_labels(families: Sequence[str]) -> tuple[str, ...]:
    """The classifier's labels: the families, then ``"other"``."""
    if OTHER in families:
        raise ValueError(f"{OTHER!r} is reserved for the classifier's non-family label")
    return (*families, OTHER)
