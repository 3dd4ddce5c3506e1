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
import torch.nn.functional as F
from torch import Tensor

from diffcore.generation import sampling_grid
from diffcore.io import from_pretrained
from diffcore.training import TrainConfig, TrainResult, train
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

LEVEL_DIR = "level"  # the level predictor's folder inside a refiner's model folder


def _corrupt(process: Any, x0: Tensor, t: Tensor, generator: torch.Generator) -> Tensor:
    out = process.corrupt(x0, t, generator)
    return out[0] if isinstance(out, tuple) else out  # Gaussian: (x_t, eps)


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
    process = model.process
    net = Judge(JudgeConfig(in_channels=model.channels, num_classes=1, dropout=0.0))

    def loss_fn(net: Any, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        x0 = batch["images"]
        t = process.sample_time(len(x0), generator, x0.device)
        xt = _corrupt(process, x0, t, generator)
        return F.mse_loss(torch.sigmoid(net(xt).squeeze(1)), t.float())

    return train(
        net,
        loss_fn,
        data,
        config,
        out_dir=out_dir,
        collate_fn=keep_batch,
        device=device,
        progress=progress,
    )


def load_level_predictor(directory: str | Path, *, device: Any = "cpu") -> Judge:
    """The level predictor of a model folder (``directory/level``) or a predictor's own."""
    path = Path(directory)
    if (path / LEVEL_DIR).is_dir():
        path = path / LEVEL_DIR
    net = from_pretrained(Judge, path, device=device).eval()
    if net.config.num_classes != 1:
        raise ValueError(f"{path} is a classifier, not a level predictor (one output)")
    return net


@torch.no_grad()
def predict_levels(predictor: Judge, images: Tensor, *, batch_size: int = 500) -> Tensor:
    """The level t (N,) in (0, 1) each image looks corrupted to; images float in [-1, 1]."""
    device = next(predictor.parameters()).device
    out = [
        torch.sigmoid(predictor(chunk.to(device).float()).squeeze(1)).cpu()
        for chunk in images.split(batch_size)
    ]
    return torch.cat(out)


def strength_for_level(pipe: Any, level: float, sampler: str, steps: int) -> float:
    """The ``edit`` strength (share of the sampler's steps) that starts at level t: t itself
    for a restorer (even steps of severity); for a Gaussian model the share of the sampler's
    grid at or below the noise of time t (at least one step)."""
    if pipe.restores:
        return min(1.0, max(level, 1.0 / steps))
    grid = sampling_grid(pipe.process, sampler, steps, sigma_min=pipe.sigma_min)
    sigma = float(pipe.process.schedule.sigma(torch.tensor(level, dtype=torch.float64)))
    below = int((grid[:-1] <= sigma * (1 + 1e-9)).sum())
    return max(1, below) / steps


def refine(
    pipe: Any,
    images: Tensor,
    *,
    strength: float | None = None,
    predictor: Judge | None = None,
    resolution: float = 0.05,
    **sampling: Any,
) -> tuple[Tensor, Tensor]:
    """Refine ``images`` (B, C, H, W) in [-1, 1] with the pipeline's model: ``edit`` from the
    level given (``strength``, a share of the steps) or read per image by ``predictor``
    (rounded to ``resolution``, so images at the same level share a batch). Returns the refined
    images and the strength each one got. sampling: as in ``pipe.edit`` (sampler, steps, seed,
    labels...)."""
    if (strength is None) == (predictor is None):
        raise ValueError("give a strength or a level predictor (to read each image's level)")
    n = len(images)
    if strength is not None:
        return pipe.edit(images, strength, **sampling), torch.full((n,), float(strength))
    plan, _ = pipe.plan({k: sampling[k] for k in ("sampler", "steps") if k in sampling})
    levels = (predict_levels(predictor, images) / resolution).round() * resolution
    strengths = torch.tensor(
        [strength_for_level(pipe, float(t), plan.sampler, plan.steps) for t in levels.tolist()]
    )
    out = torch.empty_like(images, dtype=torch.float32)
    for value in strengths.unique().tolist():
        rows = (strengths == value).nonzero().flatten()
        chosen = {k: _rows(v, rows) if _per_row(v, n) else v for k, v in sampling.items()}
        out[rows] = pipe.edit(images[rows], value, **chosen).to(out.dtype)
    return out, strengths


def _per_row(value: Any, n: int) -> bool:
    """Whether a keyword is one value per image (labels, captions) to split with the rows."""
    if isinstance(value, Tensor):
        return value.ndim >= 1 and len(value) == n
    return isinstance(value, (list, tuple)) and len(value) == n


def _rows(value: Any, rows: Tensor) -> Any:
    return value[rows] if isinstance(value, Tensor) else [value[i] for i in rows.tolist()]
