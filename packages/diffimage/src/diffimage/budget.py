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


def training_costs(
    model: nn.Module,
    data: ImageData,
    batch_size: int,
    *,
    precision: str = "auto",
    device: str | torch.device = "cpu",
    preview: dict[str, Any] | None = None,
) -> tuple[float, float]:
    """(seconds per training step at ``precision``, as ``TrainConfig.precision`` has it; seconds
    per row of the preview grid sampled with the ``preview`` options, steps and guidance): the
    costs a run on a wall-clock budget plans with. A slow step is timed once, a fast one over
    a few steps (a fraction of a second more, for a steadier figure)."""
    timing = {"device": device, "precision": precision}  # "auto": as the loop resolves it
    step = seconds_per_step(model, data, batch_size, trials=1, **timing)
    if step < 0.5:
        step = seconds_per_step(model, data, batch_size, trials=4, **timing)
    return step, seconds_per_preview_row(model, device=device, **(preview or {}))


@torch.no_grad()
def seconds_per_preview_row(
    model: nn.Module, *, steps: int = 20, guidance: float = 1.0, device: str | torch.device = "cpu"
) -> float:
    """Seconds to sample one row of ``diffimage.images.save_preview``'s grid with ``model`` as
    it is (``steps`` sampler steps; guidance's second branch when ``guidance`` != 1): a
    two-step run timed after a one-step warm-up, per step, times ``steps``."""
    import time

    from diffimage.conditioning import grid_labels
    from diffimage.pipeline import ImagePipeline

    columns, labels = grid_labels(model.num_classes, 1)
    pipe = ImagePipeline(model, device=device)
    pipe.sample(columns, labels=labels, steps=1, guidance=guidance)  # warm-up
    start = time.perf_counter()
    pipe.sample(columns, labels=labels, steps=2, guidance=guidance)
    return steps * (time.perf_counter() - start) / 2
