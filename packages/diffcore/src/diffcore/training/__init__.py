"""One training loop for every domain (``train``), its settings, EMA, checkpoints, the
distributed helpers, and few-call distillation run on the same loop."""

from diffcore.training.budget import StepTiming, seconds_per_step, step_timing, steps_for_budget
from diffcore.training.checkpoint import latest_checkpoint, list_checkpoints
from diffcore.training.config import LogRow, NonFiniteLossError, TrainConfig, TrainResult
from diffcore.training.data import BatchStream, Position, epoch_permutation
from diffcore.training.distill import ProgressiveDistillation, distill, distill_rounds, halvings
from diffcore.training.distributed import DistInfo, dist_info
from diffcore.training.dropout import drop_condition
from diffcore.training.ema import EMA, default_ema_decay
from diffcore.training.levels import level_loss, train_level_predictor
from diffcore.training.loop import autocast_dtype, resolve_device, resolve_precision, train

__all__ = [
    "level_loss",
    "train_level_predictor",
    "EMA",
    "BatchStream",
    "DistInfo",
    "LogRow",
    "NonFiniteLossError",
    "Position",
    "ProgressiveDistillation",
    "StepTiming",
    "TrainConfig",
    "TrainResult",
    "autocast_dtype",
    "default_ema_decay",
    "dist_info",
    "distill",
    "distill_rounds",
    "drop_condition",
    "epoch_permutation",
    "halvings",
    "latest_checkpoint",
    "list_checkpoints",
    "resolve_device",
    "resolve_precision",
    "seconds_per_step",
    "step_timing",
    "steps_for_budget",
    "train",
]
