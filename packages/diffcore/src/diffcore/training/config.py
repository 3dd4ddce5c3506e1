"""Settings and results of the training loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LR_SCHEDULES = ("one_cycle", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Sizes are per process; under DDP the global batch is
    ``batch_size * world_size`` and each optimizer step sees ``grad_accum`` global batches."""

    steps: int = 10_000  # optimizer steps in the whole run (also the one-cycle length)
    batch_size: int = 64  # samples per micro-batch, per process
    lr: float = 3e-4  # peak learning rate (one-cycle) or the constant rate
    weight_decay: float = 0.0  # AdamW decoupled decay, applied to weights with ndim >= 2 only
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas (momentum is not cycled)
    lr_schedule: Literal["one_cycle", "constant"] = "one_cycle"  # torch OneCycleLR or flat
    warmup: float = 0.1  # one-cycle: fraction of the steps rising to lr (OneCycleLR pct_start)
    div_factor: float = 25.0  # one-cycle: the run starts at lr / div_factor
    final_div_factor: float = 1e4  # one-cycle: it ends at lr / div_factor / final_div_factor
    grad_clip: float | None = 1.0  # max global gradient norm; None = no clipping
    grad_accum: int = 1  # micro-batches accumulated per optimizer step
    ema_decay: float | None = 0.999  # EMA of the weights, kept in fp32; None = no EMA
    ema_warmup: bool = False  # the EMA's decay rises as min(ema_decay, (1 + n) / (10 + n))
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: fp32 CPU, bf16 CUDA
    checkpoint_every: int = 1000  # steps between checkpoints (a final one is always written)
    keep_checkpoints: int = 2  # newest checkpoints kept on disk; older ones are pruned
    seed: int = 0  # seeds the model RNG, the data order and the loss generator
    log_every: int = 50  # steps between log rows (and progress-bar updates)
    num_workers: int = 0  # DataLoader worker processes (0 = load in the training process)
    # Sort windows of this many global batches by sample length, so batches pad little
    # (0 = off; the dataset needs a `lengths` attribute). See diffcore.training.data.
    length_window: int = 0
    # torch.compile the module the loss sees (inductor; C++ on CPU): a ModernBERT text denoiser's
    # CPU step took 0.44 s instead of 0.63 s after ~26 s of compiling. Checkpoints, EMA and the
    # saved weights come from the uncompiled module.
    compile: bool = False
    # Wall-clock stop (a ``time.time()`` value, comparable across processes): the loop ends after
    # the first step that finishes past it, checkpoints and writes ``final/`` as at the last step.
    # A safety net for budgets in minutes; choose ``steps`` to fit the budget too, since a
    # one-cycle schedule cut short never anneals. None = no deadline.
    deadline: float | None = None

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "grad_accum", "checkpoint_every", "keep_checkpoints")
        for name in (*positive, "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an int >= 1, got {value!r}")
        if self.length_window < 0:
            raise ValueError(f"TrainConfig.length_window must be >= 0, got {self.length_window}")
        if self.num_workers < 0:
            raise ValueError(f"TrainConfig.num_workers must be >= 0, got {self.num_workers}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"TrainConfig.betas must be two values in [0, 1), got {self.betas}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"TrainConfig.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"
            )
        if not 0 <= self.warmup < 1:
            raise ValueError(f"TrainConfig.warmup must be in [0, 1), got {self.warmup}")
        if self.div_factor <= 0 or self.final_div_factor <= 0:
            raise ValueError("TrainConfig.div_factor and final_div_factor must be > 0")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"TrainConfig.grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ValueError(
                f"TrainConfig.ema_decay must be in [0, 1) or None, got {self.ema_decay}"
            )
        if self.deadline is not None and not self.deadline > 0:
            raise ValueError(
                f"TrainConfig.deadline must be a time.time() value or None, got {self.deadline!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"TrainConfig.precision must be one of {PRECISIONS}, got {self.precision!r}"
            )


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or infinite loss (or gradient norm): it stopped before that update,
    keeping the last good checkpoint."""


class LogRow(NamedTuple):
    """One log entry: loss is the mean over the steps since the previous row (and over ranks);
    lr is the rate the step used."""

    step: int
    loss: float
    lr: float


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` leaves behind.

    step: the last completed step; loss: that step's loss (mean of its micro-batches, this rank;
    nan when no step ran in this call); final_model: the ``final/`` directory (EMA weights when
    EMA is on); checkpoint: the newest checkpoint directory; log: the rows logged in this call;
    stopped_early: True when ``TrainConfig.deadline`` ended the run before ``config.steps``.
    """

    step: int
    loss: float
    final_model: Path
    checkpoint: Path
    log: list[LogRow] = field(default_factory=list)
    stopped_early: bool = False
