"""Refiners for spectrograms: an audio model improves recordings made anywhere by running the
last part of its own process on their spectrograms (``diffcore.generation.refine``). Its level
predictor (``level/`` inside the model folder) reads how noisy or degraded each spectrogram
looks, so ``refine audio`` needs no strength."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn.functional as F

from diffaudio.data import AudioClips
from diffaudio.model import AudioUNet
from diffaudio.pipeline import clip_spectrograms
from diffcore.generation.refine import load_level_predictor as level_predictor
from diffcore.nn.level import LevelNet, LevelNetConfig
from diffcore.training import TrainConfig, TrainResult, levels

__all__ = ["load_level_predictor", "train_level_predictor"]


def train_level_predictor(
    model: AudioUNet,
    clips: AudioClips,
    config: TrainConfig,
    *,
    out_dir: str | Path,
    device: Any = None,
    progress: bool = True,
) -> TrainResult:
    """Train a small conv net (``LevelNet``) to read the level t of ``model``'s process from
    the clips' spectrograms corrupted at random t (its training distribution of t). Saved in
    ``result.final_model``."""
    x = clip_spectrograms(clips, model.config.spectrogram)
    if model.config.size is not None:  # a cascade's base works on the coarse grid
        x = F.interpolate(x, size=model.config.size, mode="area")
    net = LevelNet(LevelNetConfig(in_channels=x.shape[1]))
    rows = [{"x": spectrogram} for spectrogram in x]
    options = {"device": device, "progress": progress}
    return levels.train_level_predictor(
        net, model.process, rows, config, key="x", out_dir=out_dir, **options
    )


def load_level_predictor(directory: str | Path, *, device: Any = "cpu") -> LevelNet:
    """The level predictor of a model folder (``directory/level``) or a predictor's own."""
    net = level_predictor(directory, device=device)
    if net.config.vocab_size:
        raise ValueError(f"{directory} reads tokens, not spectrograms")
    return net
