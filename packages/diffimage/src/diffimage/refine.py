"""Refiners: a model improves images made anywhere (this toolkit's few-step samples, another
generator's, a sketch) by running the last part of its own process on them — boosting, one
more round. A small *level predictor* says how far along each input is (the time or severity
t in [0, 1] it looks corrupted to) when no strength is given.

The refiner is any image model: a restorer trained on a crappification (``--process
blur+noise``), a Gaussian model, or an expert for the low noise levels (``--noise-range 0,0.3``).
Its predictor lives inside its model folder (``level/``), trained on the same process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from diffcore.generation.refine import LEVEL_DIR, predict_levels, refine, strength_for_level
from diffcore.generation.refine import load_level_predictor as level_predictor
from diffcore.training import TrainConfig, TrainResult, levels
from diffimage.data import ImageData, keep_batch
from diffimage.evaluate import Judge, JudgeConfig
from diffimage.model import ImageDiffusion

__all__ = [
    "LEVEL_DIR",
    "load_level_predictor",
    "predict_levels",
    "refine",
    "strength_for_level",
    "train_level_predictor",
]


def train_level_predictor(
    model: ImageDiffusion,
    data: ImageData,
    config: TrainConfig,
    *,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a small ResNet (the judge's shape, one output) to read the level t from images
    corrupted by ``model``'s process at random t (its training distribution of t): mean
    squared error of sigmoid(output) against t. Saved in ``result.final_model``."""
    net = Judge(JudgeConfig(in_channels=model.channels, num_classes=1, dropout=0.0))
    options = {"collate_fn": keep_batch, "device": device, "progress": progress}
    return levels.train_level_predictor(
        net, model.process, data, config, key="images", out_dir=out_dir, **options
    )


def load_level_predictor(directory: str | Path, *, device: Any = "cpu") -> Judge:
    """The level predictor of a model folder (``directory/level``) or a predictor's own."""
    net = level_predictor(directory, model_class=Judge, device=device)
    if net.config.num_classes != 1:
        raise ValueError(f"{directory} is a classifier, not a level predictor (one output)")
    return net
