"""One training loop for every domain (``train``), its settings, EMA, checkpoints and the
distributed helpers."""

from diffcore.training.budget import StepTiming, seconds_per_step, step_timing, steps_for_budget
from diffcore.training.checkpoint import latest_checkpoint, list_checkpoints
from diffcore.training.config import LogRow, TrainConfig, TrainResult
from diffcore.training.data import BatchStream, Position, epoch_permutation
from diffcore.training.distributed import DistInfo, dist_info
from diffcore.training.ema import EMA
from diffcore.training.loop import autocast_dtype, train

__all__ = [
    "EMA",
    "BatchStream",
    "DistInfo",
    "LogRow",
    "Position",
    "StepTiming",
    "TrainConfig",
    "TrainResult",
    "autocast_dtype",
    "dist_info",
    "epoch_permutation",
    "latest_checkpoint",
    "list_checkpoints",
    "seconds_per_step",
    "step_timing",
    "steps_for_budget",
    "train",
]
