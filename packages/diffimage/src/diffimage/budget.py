"""Training for a wall-clock budget: time a few optimizer steps, then choose the step count.

The one-cycle learning-rate schedule must know its length in advance, so a budget in minutes
becomes a number of steps before training starts, from the measured time per step.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn

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
    """Median seconds of one AdamW step (forward, backward, update) at ``batch_size``, measured
    on a copy of ``model`` after one warm-up step. loss(net, batch, generator) defaults to the
    model's diffusion loss; precision "bf16" / "fp16" times it under autocast as training does."""
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if loss is None:
        check_data(model, data)
        process = model.process

        def loss(net: Any, batch: dict, generator: torch.Generator) -> torch.Tensor:
            cond = {k: v for k, v in batch.items() if k in ("labels", "context")}
            return process.loss(net, batch["images"], generator, **cond)

    net = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    generator = torch.Generator(device).manual_seed(0)
    batch = {k: v.to(device) for k, v in data[list(range(min(batch_size, len(data))))].items()}
    times = []
    for i in range(trials + 1):
        start = time.perf_counter()
        with torch.autocast(torch.device(device).type, dtype=amp, enabled=amp is not None):
            value = loss(net, batch, generator)
        value.float().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step pays for allocation and kernel selection
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def steps_for_budget(seconds: float, step_seconds: float, *, reserve: float = 0.05) -> int:
    """Steps that fit in ``seconds`` at ``step_seconds`` each, keeping ``reserve`` of the budget
    for checkpoints, logging and data loading."""
    if seconds <= 0 or step_seconds <= 0:
        raise ValueError(f"budget and step time must be > 0, got {seconds} and {step_seconds}")
    return max(1, int(seconds * (1 - reserve) / step_seconds))


def ema_decay_for(steps: int, *, share: float = 0.1) -> float:
    """EMA decay whose averaging window ``1 / (1 - decay)`` is ``share`` of a run of ``steps``,
    within [0.9, 0.9999]. A fixed 0.999 would leave 0.999^400 = 67 % of the random initial
    weights in the average after a 400-step run (diffcore's EMA has no warm-up)."""
    if steps < 1 or not 0 < share <= 1:
        raise ValueError(f"need steps >= 1 and share in (0, 1], got {steps} and {share}")
    return min(0.9999, max(0.9, 1.0 - 1.0 / (share * steps)))
