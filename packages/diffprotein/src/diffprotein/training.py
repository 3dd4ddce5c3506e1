"""Train and score: diffcore's ``MaskProcess`` loss (MDLM's continuous-time ELBO, per block for
a block-diffusion model) or, for a substitution model, ``SubstitutionProcess``'s cross-entropy,
run by diffcore's one training loop; and a masked model's own likelihood of sequences.
Sampling and editing: ``diffprotein.pipeline.ProteinPipeline``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from diffcore.training import (
    LogRow,
    TrainConfig,
    TrainResult,
    drop_condition,
    step_timing,
    train,
)
from diffprotein.alphabet import PAD_ID, encode
from diffprotein.conditioning import LengthPrior, family_ids
from diffprotein.corruption import check_has_likelihood, substitution_process
from diffprotein.data import ProteinRecord
from diffprotein.model import (
    PROCESS,
    EsmShape,
    ProteinDenoiser,
    ProteinDenoiserConfig,
    process_for,
)

__all__ = [
    "PROCESS",
    "SequenceDataset",
    "build_denoiser",
    "collate",
    "likelihood",
    "process_for",
    "sequence_likelihoods",
    "train_denoiser",
]


class SequenceDataset(Dataset):
    """Records as ``(tokens (L,) long, family index)`` items; family -1 where a record has no
    family or the model has none. Sequences longer than ``max_length`` are an error naming the
    record (read with ``ReadOptions(max_length=...)`` to catch or skip them earlier)."""

    def __init__(
        self, records: Sequence[ProteinRecord], families: Sequence[str], max_length: int
    ) -> None:
        if not records:
            raise ValueError("no sequences to train on")
        self.tokens, names = [], []
        for r in records:
            if len(r.sequence) > max_length:
                raise ValueError(
                    f"record {r.id!r} has {len(r.sequence)} residues, more than the model's "
                    f"max_length {max_length}"
                )
            try:
                self.tokens.append(encode(r.sequence))
            except ValueError as err:
                raise ValueError(f"record {r.id!r}: {err}") from None
            names.append(r.family if r.family in families else None)
        self.family = family_ids(names, families)
        # Residues per item: lets the training loop group batches by length (length_window).
        self.lengths = [len(t) for t in self.tokens]

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.tokens[i], int(self.family[i])


def collate(items: list[tuple[Tensor, int]]) -> dict[str, Tensor]:
    """{"tokens": (B, L_max) long padded with <pad>, "family": (B,) long}."""
    width = max(len(t) for t, _ in items)
    tokens = torch.full((len(items), width), PAD_ID, dtype=torch.long)
    for row, (t, _) in enumerate(items):
        tokens[row, : len(t)] = t
    return {"tokens": tokens, "family": torch.tensor([f for _, f in items], dtype=torch.long)}


def build_denoiser(
    records: Sequence[ProteinRecord],
    shape: EsmShape | dict[str, Any],
    *,
    conditional: bool = True,
    diffusion_block: int | None = None,
    corruption: str = "mask",
    mask_range: tuple[float, float] = (0.0, 1.0),
) -> ProteinDenoiser:
    """A fresh denoiser of ``shape`` whose families (if ``conditional``) and length histogram
    come from ``records``; ``diffusion_block``: residues per block of a block-diffusion model
    (None: the whole sequence is one block, MDLM); ``corruption``: what it learns to undo,
    "mask", "substitution" or "blosum" (``diffprotein.corruption``); ``mask_range``: train only
    on these masked shares (an expert, ``MaskProcess.mask_range``)."""
    fields = dataclass_fields(shape)
    families = tuple(sorted({r.family for r in records if r.family})) if conditional else ()
    prior = LengthPrior.from_records((r.family, len(r.sequence)) for r in records)
    model = {"diffusion_block": diffusion_block, "corruption": corruption}
    model["mask_range"] = tuple(mask_range)
    return ProteinDenoiser(
        ProteinDenoiserConfig(**fields, families=families, lengths=prior.to_json(), **model)
    )


def dataclass_fields(shape: EsmShape | dict[str, Any]) -> dict[str, Any]:
    if isinstance(shape, EsmShape):
        return {k: getattr(shape, k) for k in EsmShape.__dataclass_fields__}
    return dict(shape)


@dataclass(frozen=True)
class DenoiserLoss:
    """``loss_fn(model, batch, generator)`` for diffcore's loop: the masking ELBO (or, for a
    substitution model, the cross-entropy of the clean residues), with the family dropped to
    "none" for a ``family_dropout`` share of rows so the same network also learns the
    unconditional model that classifier-free guidance needs. ``block``, ``corruption`` and
    ``mask_range``: the model's (the loop may hand over a wrapper, so they are given here)."""

    family_dropout: float = 0.1
    block: int | None = None
    corruption: str = "mask"
    mask_range: tuple[float, float] = (0.0, 1.0)

    @classmethod
    def for_model(cls, model: ProteinDenoiser, family_dropout: float = 0.1) -> DenoiserLoss:
        """The loss ``train_denoiser`` trains ``model`` with (its block size and corruption
        included), so a step timed elsewhere costs what a training step costs."""
        config = model.config
        return cls(family_dropout, config.diffusion_block, config.corruption, config.mask_range)

    def __call__(self, model: Any, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        tokens, family = batch["tokens"], batch["family"]
        family = drop_condition(family, self.family_dropout, -1, generator)
        process = substitution_process(self.corruption) or process_for(self.block, self.mask_range)
        return process.loss(model, tokens, generator, loss_mask=tokens != PAD_ID, family=family)


def train_denoiser(
    model: ProteinDenoiser,
    records: Sequence[ProteinRecord],
    config: TrainConfig,
    out_dir: str | Path,
    *,
    family_dropout: float = 0.1,
    device: str | torch.device | None = None,
    progress: bool = True,
    on_log: Callable[[LogRow], None] | None = None,
) -> TrainResult:
    """Train (or resume training) ``model`` on ``records``; checkpoints in
    ``out_dir/checkpoints``, the EMA model in ``out_dir/final`` (``ProteinDenoiser`` folder)."""
    if not 0.0 <= family_dropout <= 1.0:
        raise ValueError(f"family_dropout must lie in [0, 1], got {family_dropout}")
    data = SequenceDataset(records, model.config.families, model.config.max_length)
    return train(
        model,
        DenoiserLoss.for_model(model, family_dropout),
        data,
        config,
        out_dir=out_dir,
        collate_fn=collate,
        device=device,
        progress=progress,
        on_log=on_log,
    )


@torch.no_grad()
def sequence_likelihoods(
    model: ProteinDenoiser,
    records: Sequence[ProteinRecord],
    *,
    conditional: bool = True,
    samples: int = 16,
    batch_size: int = 64,
    seed: int = 0,
) -> list[float]:
    """Per record, an upper bound on its negative log-likelihood in nats per residue
    (MaskProcess.nll_bound with ``samples`` mask draws; per block for a block-diffusion model),
    given its family where the model knows it and ``conditional``: the model's own score of
    designs or natural sequences (lower is likelier). A substitution model has no such bound:
    ValueError."""
    check_has_likelihood(model.config.corruption)
    device = next(model.parameters()).device
    model.eval()
    families = model.config.families if conditional else ()
    data = SequenceDataset(records, families, model.config.max_length)
    g = torch.Generator(device=device).manual_seed(seed)
    process = process_for(model.config.diffusion_block)
    out: list[float] = []
    for start in range(0, len(data), batch_size):
        batch = collate([data[i] for i in range(start, min(len(data), start + batch_size))])
        tokens = batch["tokens"].to(device)
        nll = process.nll_bound(
            model,
            tokens,
            generator=g,
            samples=samples,
            loss_mask=tokens != PAD_ID,
            family=batch["family"].to(device),
        )
        out += nll.tolist()
    return out


def likelihood(model: ProteinDenoiser, records: Sequence[ProteinRecord], **options: Any) -> float:
    """Upper bound on the negative log-likelihood, in nats per residue, over ``records``
    (MaskProcess.nll_bound, LLaDA's low-variance estimator; per block for a block-diffusion
    model); exp of it bounds the perplexity. ``options`` as in ``sequence_likelihoods``."""
    if not records:
        raise ValueError("no sequences to score")
    nll = sequence_likelihoods(model, records, **options)
    sizes = [len(r.sequence) for r in records]
    return sum(v * n for v, n in zip(nll, sizes, strict=True)) / sum(sizes)


def seconds_per_step(
    model: nn.Module, records: Sequence[ProteinRecord], config: TrainConfig, device: Any = "cpu"
) -> float:
    """Seconds of one training step of ``model`` (a denoiser, its autoregressive peer or the
    family judge) on the first ``config.batch_size`` of ``records`` at ``config.precision``, as
    diffcore's loop takes it: what a run on a wall-clock budget plans with (timed on a copy;
    the model is left as it is)."""
    from diffprotein import judges

    part, length = list(records)[: config.batch_size], model.config.max_length
    if isinstance(model, judges.FamilyClassifier):
        labels = model.config.labels
        data = judges.classifier_dataset(part, labels, max_length=length, seed=config.seed)
        loss = judges.classifier_loss
    else:
        data = SequenceDataset(part, getattr(model.config, "families", ()), length)
        loss = (
            DenoiserLoss.for_model(model) if isinstance(model, ProteinDenoiser) else judges.lm_loss
        )
    batch = collate([data[i] for i in range(min(len(data), config.batch_size))])
    return step_timing(model, loss, batch, config, device=device, trials=1).step
