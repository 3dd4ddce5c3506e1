"""Refining sequences made anywhere (another model's designs, a mutated natural sequence): a
masked denoiser re-masks a share of each sequence's residues and redraws them
(``ProteinPipeline.edit``), the share read per sequence by a small level predictor when none is
given. The predictor learns what wrong residues look like from windows of training sequences
with a share t of their residues replaced uniformly (``LevelNet`` on tokens)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from Bio.SeqRecord import SeqRecord
from torch import Tensor

from diffcore.generation.refine import load_level_predictor as level_predictor
from diffcore.generation.refine import token_strengths
from diffcore.nn.level import LevelNet, LevelNetConfig
from diffcore.training import TrainConfig, TrainResult, levels
from diffprotein.alphabet import BASE_VOCAB_SIZE, encode
from diffprotein.corruption import substitution_process
from diffprotein.data import ProteinRecord
from diffprotein.model import ProteinDenoiser

__all__ = ["load_level_predictor", "refine_records", "train_level_predictor"]

WINDOW = 32  # residues per training window of the level predictor


def train_level_predictor(
    model: ProteinDenoiser,
    records: Sequence[ProteinRecord],
    config: TrainConfig,
    *,
    out_dir: str | Path,
    device: Any = None,
    progress: bool = True,
) -> TrainResult:
    """Train a ``LevelNet`` on residues to read the share t of a sequence's residues replaced
    by uniform draws over the 20 standard residues (t uniform in [0, 1]), on every window of
    ``WINDOW`` residues of ``records``. Saved in ``result.final_model``. ``model`` is the
    refiner it serves (its folder keeps the predictor)."""
    windows = [
        encode(r.sequence)[i : i + WINDOW]
        for r in records
        for i in range(0, len(r.sequence) - WINDOW + 1, WINDOW)
    ]
    if not windows:
        raise ValueError(f"no record has {WINDOW} residues to learn levels from")
    net = LevelNet(LevelNetConfig(widths=(64, 64, 128), vocab_size=BASE_VOCAB_SIZE))
    rows = [{"tokens": w} for w in windows]
    options = {"device": device, "progress": progress}
    process = substitution_process("substitution")
    return levels.train_level_predictor(
        net, process, rows, config, key="tokens", out_dir=out_dir, **options
    )


def load_level_predictor(directory: str | Path, *, device: Any = "cpu") -> LevelNet:
    """The level predictor of a model folder (``directory/level``) or a predictor's own."""
    net = level_predictor(directory, device=device)
    if net.config.vocab_size != BASE_VOCAB_SIZE:
        raise ValueError(f"{directory} is not a protein level predictor")
    return net


def refine_records(
    pipe: Any,
    records: Sequence[ProteinRecord],
    *,
    strength: float | None = None,
    predictor: LevelNet | None = None,
    resolution: float = 0.05,
    **sampling: Any,
) -> tuple[list[SeqRecord], Tensor]:
    """Refine ``records`` with a masked denoiser's pipeline (``ProteinPipeline``): re-mask and
    redraw the ``strength`` share of each, or the share ``predictor`` reads on each (rounded to
    ``resolution``, at least one residue). Returns the records, in order, and the strength each
    one got. sampling: as in ``pipe.edit`` (family, sampler, steps, seed...)."""
    if (strength is None) == (predictor is None):
        raise ValueError("give a strength or a level predictor (to read each sequence's level)")
    n = len(records)
    if strength is not None:
        return pipe.edit(records, strength, **sampling), torch.full((n,), float(strength))
    strengths = token_strengths(predictor, [encode(r.sequence) for r in records], resolution)
    out: list[SeqRecord | None] = [None] * n
    for value in strengths.unique().tolist():  # one edit per strength, records back in order
        rows = (strengths == value).nonzero().flatten().tolist()
        edited = pipe.edit([records[i] for i in rows], value, **sampling)
        for i, record in zip(rows, edited, strict=True):
            out[i] = record
    return out, strengths
