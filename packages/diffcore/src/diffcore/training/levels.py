"""Training a level predictor: a network that reads the level t (time or severity) an input
looks corrupted to under a process, learned from clean data corrupted by that process at the
times it trains on (``diffcore.nn.level.LevelNet``, or any net giving one logit per row)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from diffcore.training.loop import train

__all__ = ["corrupt_at", "level_loss", "train_level_predictor"]


def corrupt_at(process: Any, x0: Tensor, t: Tensor, generator: torch.Generator) -> Tensor:
    """x0 corrupted by ``process`` at times t (a Gaussian process returns (x_t, noise))."""
    out = process.corrupt(x0, t, generator)
    return out[0] if isinstance(out, tuple) else out


def level_loss(process: Any, key: str) -> Callable[[Any, dict, torch.Generator], Tensor]:
    """``loss_fn(net, batch, generator)``: batch[key] corrupted at times drawn as ``process``
    draws them in training; mean squared error of sigmoid(net(x_t)) against t."""

    def loss_fn(net: Any, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        x0 = batch[key]
        t = process.sample_time(len(x0), generator, x0.device)
        logits = net(corrupt_at(process, x0, t, generator)).reshape(len(x0))
        return F.mse_loss(torch.sigmoid(logits), t.float())

    return loss_fn


def train_level_predictor(
    net: Any, process: Any, data: Any, config: Any, *, key: str, out_dir: Any, **options: Any
) -> Any:
    """Train ``net`` to read the level of ``process`` from batches whose ``key`` holds clean
    inputs (``data`` and ``options`` as ``diffcore.training.train`` takes them: collate_fn,
    device, progress). The net lands in ``result.final_model``."""
    return train(net, level_loss(process, key), data, config, out_dir=out_dir, **options)
