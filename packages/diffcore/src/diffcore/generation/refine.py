"""Refiners: a continuous pipeline's model improves inputs made anywhere (this toolkit's
few-step samples, another generator's, a sketch) by running the last part of its own process on
them: boosting, one more round. A level predictor (``diffcore.training.levels``) says how far
along each input is when no strength is given."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diffcore.generation.continuous import sampling_grid
from diffcore.io import from_pretrained
from diffcore.nn.level import LevelNet

__all__ = [
    "LEVEL_DIR",
    "load_level_predictor",
    "predict_levels",
    "refine",
    "strength_for_level",
    "token_strengths",
]

LEVEL_DIR = "level"  # a refiner's level predictor, inside its model folder


def load_level_predictor(
    directory: str | Path, *, model_class: type = LevelNet, device: Any = "cpu"
) -> Any:
    """The level predictor of a model folder (its ``level/``) or a predictor's own folder, in
    eval mode (``model_class``: the net it was saved as)."""
    path = Path(directory)
    if (path / LEVEL_DIR).is_dir():
        path = path / LEVEL_DIR
    return from_pretrained(model_class, path, device=device).eval()


@torch.no_grad()
def predict_levels(predictor: Any, x: Tensor, *, batch_size: int = 500) -> Tensor:
    """The level t (N,) in (0, 1) each input of x (N, ...) looks corrupted to."""
    device = next(predictor.parameters()).device
    out = [
        torch.sigmoid(predictor(_as_input(chunk.to(device))).reshape(len(chunk))).cpu()
        for chunk in x.split(batch_size)
    ]
    return torch.cat(out)


def token_strengths(predictor: Any, rows: Sequence[Tensor], resolution: float = 0.05) -> Tensor:
    """The share (N,) of each token sequence to re-mask and redraw: its level as ``predictor``
    reads it, rounded to ``resolution``, at least one token and at most all of them."""
    read = torch.cat([predict_levels(predictor, row[None].cpu()) for row in rows])
    floor = torch.tensor([1.0 / max(1, len(row)) for row in rows])
    return torch.maximum((read / resolution).round() * resolution, floor).clamp_max(1.0)


def _as_input(x: Tensor) -> Tensor:
    return x.float() if x.is_floating_point() else x


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
    x: Tensor,
    *,
    strength: float | None = None,
    predictor: Any | None = None,
    resolution: float = 0.05,
    **sampling: Any,
) -> tuple[Tensor, Tensor]:
    """Refine inputs x (B, ...) with the pipeline's model: ``edit`` from the level given
    (``strength``, a share of the steps) or read per input by ``predictor`` (rounded to
    ``resolution``, so inputs at the same level share a batch). Returns the refined inputs and
    the strength each one got. sampling: as in ``pipe.edit`` (sampler, steps, seed, labels...)."""
    if (strength is None) == (predictor is None):
        raise ValueError("give a strength or a level predictor (to read each input's level)")
    n = len(x)
    if strength is not None:
        return pipe.edit(x, strength, **sampling), torch.full((n,), float(strength))
    plan, _ = pipe.plan({k: sampling[k] for k in ("sampler", "steps") if k in sampling})
    levels = (predict_levels(predictor, x) / resolution).round() * resolution
    strengths = torch.tensor(
        [strength_for_level(pipe, float(t), plan.sampler, plan.steps) for t in levels.tolist()]
    )
    out = torch.empty_like(x, dtype=torch.float32)
    for value in strengths.unique().tolist():
        rows = (strengths == value).nonzero().flatten()
        chosen = {k: _rows(v, rows) if _per_row(v, n) else v for k, v in sampling.items()}
        out[rows] = pipe.edit(x[rows], value, **chosen).to(out.dtype)
    return out, strengths


def _per_row(value: Any, n: int) -> bool:
    """Whether a keyword is one value per input (labels, captions) to split with the rows."""
    if isinstance(value, Tensor):
        return value.ndim >= 1 and len(value) == n
    return isinstance(value, (list, tuple)) and len(value) == n


def _rows(value: Any, rows: Tensor) -> Any:
    return value[rows] if isinstance(value, Tensor) else [value[i] for i in rows.tolist()]
