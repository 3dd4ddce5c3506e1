"""Training for a wall-clock budget: time an optimizer step, then choose the step count.

The one-cycle learning-rate schedule must know its length before training starts, so a budget
in minutes becomes a number of steps, from the measured time of one step taken exactly as
``train`` takes it (same autocast, same gradient accumulation).
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from diffcore.training.config import TrainConfig
from diffcore.training.data import to_device
from diffcore.training.loop import LossFn, autocast_dtype


@dataclass(frozen=True)
class StepTiming:
    """Measured cost of training: ``step`` seconds per optimizer step (median), and ``first``
    seconds for the first step, which pays for allocation and, with ``TrainConfig.compile``,
    for compiling."""

    step: float
    first: float

    @property
    def startup(self) -> float:
        """Seconds a run spends once before its steps run at the measured pace."""
        return max(0.0, self.first - self.step)


def step_timing(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Any,
    config: TrainConfig,
    *,
    device: str | torch.device = "cpu",
    trials: int = 3,
) -> StepTiming:
    """Time AdamW steps (``config.grad_accum`` forward/backward passes of
    ``loss_fn(model, batch, generator)`` under ``config.precision``'s autocast, then the update)
    exactly as ``train`` takes them, compiled when ``config.compile`` is set; measured on a copy
    of ``model`` (left untouched): one first step, then ``trials`` timed steps. ``batch`` is one
    collated micro-batch (moved to ``device`` here)."""
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    device = torch.device(device)
    net = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr)
    seen = torch.compile(net) if config.compile else net
    generator = torch.Generator(device).manual_seed(0)
    batch = to_device(batch, device)
    amp = autocast_dtype(config.precision, device)
    times = []
    for _ in range(trials + 1):
        start = time.perf_counter()
        for _ in range(config.grad_accum):
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = loss_fn(seen, batch, generator)
            loss.float().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return StepTiming(step=statistics.median(times[1:]), first=times[0])


def seconds_per_step(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Any,
    config: TrainConfig,
    *,
    device: str | torch.device = "cpu",
    trials: int = 3,
) -> float:
    """Median seconds of one optimizer step: ``step_timing(...).step``."""
    return step_timing(model, loss_fn, batch, config, device=device, trials=trials).step


def steps_for_budget(seconds: float, step_seconds: float, *, reserve: float = 0.05) -> int:
    """Steps that fit in ``seconds`` at ``step_seconds`` each, keeping ``reserve`` of the budget
    for checkpoints, logging and data loading."""
    if seconds <= 0 or step_seconds <= 0:
        raise ValueError(f"budget and step time must be > 0, got {seconds} and {step_seconds}")
    if not 0 <= reserve < 1:
        raise ValueError(f"reserve must be in [0, 1), got {reserve}")
    return max(1, int(seconds * (1 - reserve) / step_seconds))
