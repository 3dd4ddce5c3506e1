"""Training images for a wall-clock budget: the step time of an image model, and an EMA decay
sized to the run. The budget arithmetic itself is diffcore's (``diffcore.training``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diffcore import training
from diffcore.training import TrainConfig
from diffimage.data import ImageData
from diffimage.pipeline import check_data


def seconds_per_step(
    model: nn.Module,
    data: ImageData,
    batch_size: int,
    *,
    loss: Any = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    trials: int = 3,
) -> float:
    """Median seconds of one AdamW step of ``model`` on the first ``batch_size`` images of
    ``data`` (:func:`diffcore.training.seconds_per_step`; the model is left untouched).
    loss(net, batch, generator) defaults to the model's diffusion loss; precision "bf16" /
    "fp16" times it under autocast as training does."""
    if loss is None:
        check_data(model, data)
        process = model.process

        def loss(net: Any, batch: dict, generator: torch.Generator) -> torch.Tensor:
            cond = {k: v for k, v in batch.items() if k in ("labels", "context")}
            return process.loss(net, batch["images"], generator, **cond)

    batch = data[list(range(min(batch_size, len(data))))]
    config = TrainConfig(steps=1, batch_size=batch_size, lr=1e-4, precision=precision)
    return training.seconds_per_step(model, loss, batch, config, device=device, trials=trials)


def ema_decay_for(steps: int, *, share: float = 0.1) -> float:
    """EMA decay whose averaging window ``1 / (1 - decay)`` is ``share`` of a run of ``steps``,
    within [0.9, 0.9999]. A fixed 0.999 would leave 0.999^400 = 67 % of the random initial
    weights in the average after a 400-step run (diffcore's EMA has no warm-up)."""
    if steps < 1 or not 0 < share <= 1:
        raise ValueError(f"need steps >= 1 and share in (0, 1], got {steps} and {share}")
    return min(0.9999, max(0.9, 1.0 - 1.0 / (share * steps)))
