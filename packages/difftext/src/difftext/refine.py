"""Refining texts made anywhere (another model's samples, a draft): a masked model re-masks a
share of each text's tokens and redraws them (``TextPipeline.edit``), the share read per text
by a small level predictor when none is given. The predictor learns what wrong tokens look
like from clean blocks with a share t of their tokens replaced uniformly (``LevelNet`` on
tokens); a text's level is the share of its tokens that look wrong."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diffcore.generation.refine import load_level_predictor as level_predictor
from diffcore.generation.refine import token_strengths
from diffcore.nn.level import LevelNet, LevelNetConfig
from diffcore.training import TrainConfig, TrainResult, levels
from difftext.data import TokenBlocks
from difftext.model import TextModel, uniform_substitution

__all__ = ["load_level_predictor", "refine_texts", "train_level_predictor"]


def train_level_predictor(
    text_model: TextModel,
    blocks: TokenBlocks,
    config: TrainConfig,
    *,
    out_dir: str | Path,
    device: Any = None,
    progress: bool = True,
) -> TrainResult:
    """Train a ``LevelNet`` on tokens to read the share t of ``blocks``' tokens replaced by
    uniform draws (t uniform in [0, 1]). Saved in ``result.final_model``."""
    net = LevelNet(LevelNetConfig(widths=(64, 64, 128), vocab_size=text_model.vocab_size))
    rows = [{"tokens": row} for row in blocks.tokens]
    process = uniform_substitution(text_model)
    options = {"device": device, "progress": progress}
    return levels.train_level_predictor(
        net, process, rows, config, key="tokens", out_dir=out_dir, **options
    )


def load_level_predictor(directory: str | Path, *, device: Any = "cpu") -> LevelNet:
    """The level predictor of a model folder (``directory/level``) or a predictor's own."""
    net = level_predictor(directory, device=device)
    if net.config.vocab_size == 0:
        raise ValueError(f"{directory} reads images or spectrograms, not tokens")
    return net


def refine_texts(
    pipe: Any,
    texts: Sequence[str],
    *,
    strength: float | None = None,
    predictor: LevelNet | None = None,
    resolution: float = 0.05,
    **sampling: Any,
) -> tuple[list[str], Tensor]:
    """Refine ``texts`` with a masked model's pipeline (``TextPipeline``): re-mask and redraw
    the ``strength`` share of each, or the share ``predictor`` reads on each (rounded to
    ``resolution``, at least one token). Returns the texts and the strength each one got."""
    if (strength is None) == (predictor is None):
        raise ValueError("give a strength or a level predictor (to read each text's level)")
    if strength is not None:
        strengths = torch.full((len(texts),), float(strength))
    else:
        strengths = token_strengths(predictor, [pipe.encode(t) for t in texts], resolution)
    return pipe.edit(texts, strengths.tolist(), **sampling), strengths
