"""``--minutes``: a wall-clock budget for the whole command, from the moment the process
started (imports, loading and calibration included) to its last file written.

A training command plans with it in three parts: what came before training (already spent),
what comes after (a preview, the final evaluation: estimated by the command), and the steps
between, chosen from a measured step time because a one-cycle schedule needs its length up
front. ``TrainConfig.deadline`` stops the loop where the estimate was too hopeful.
"""

from __future__ import annotations

import os
import time
from typing import Any

from diffuse.kit.errors import UsageError
from diffuse.kit.record import main_process

SAVE_SECONDS = 2.0  # writing the last files and the interpreter's exit, after the last step


def process_start() -> float:
    """``time.time()`` when this process started (Linux: from /proc; elsewhere: now)."""
    try:
        with open("/proc/self/stat") as f:
            # field 22 (after the parenthesised name, which may hold spaces): start, in ticks
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return time.time()
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


def world_size() -> int:
    """Processes of this command: torchrun's WORLD_SIZE, else 1."""
    raw = os.environ.get("WORLD_SIZE", "")
    return int(raw) if raw.isdigit() else 1


class Budget:
    """``minutes`` of wall clock from ``start`` (default: the process start); with
    ``minutes=None`` there is no deadline and every method says so. ``grad_accum``: micro-batches
    per optimizer step (``--grad-accum``), each costing the step time a command measures.

    Refused under torchrun (WORLD_SIZE > 1): every process would time its own step and could
    plan another step count, and the processes of one run must take the same steps."""

    def __init__(
        self, minutes: float | None, *, start: float | None = None, grad_accum: int = 1
    ) -> None:
        if minutes is not None and world_size() > 1:
            raise UsageError(
                f"--minutes under torchrun (WORLD_SIZE={world_size()}), --minutes, expected "
                "--steps: each process would time its own steps and plan its own count"
            )
        self.minutes, self.grad_accum = minutes, grad_accum
        self.start = process_start() if start is None else start
        self.deadline = None if minutes is None else self.start + 60.0 * minutes

    def __bool__(self) -> bool:
        return self.deadline is not None

    def remaining(self) -> float:
        """Seconds left (inf without a budget)."""
        return float("inf") if self.deadline is None else self.deadline - time.time()

    def plan(
        self, step: float, *, after: float = 0.0, reserve: float = 0.05
    ) -> tuple[int, float | None]:
        """(steps, deadline) of a training run that fits the time left, and says so: the
        optimizer steps of ``grad_accum`` micro-batches of ``step`` seconds each that fit before
        ``after`` seconds of work that follows training (``reserve``: the share kept for
        checkpoints and logging), and the ``TrainConfig.deadline`` that stops a slower run one
        step before that work."""
        from diffcore.training import steps_for_budget

        step *= self.grad_accum  # (an overestimate by the optimizer update: on the safe side)
        left = self.remaining()
        steps = steps_for_budget(max(left - after, step), step, reserve=reserve)
        print(
            f"--minutes: {left:.0f} s left, {after:.0f} s of it after training; {step:.3g} s a "
            f"step: {steps} steps"
        )
        return steps, self.stop_at(after=after + step)

    def fit(self, count: int, seconds_each: float, *, after: float = 0.0) -> int:
        """How many of ``count`` pieces of work of ``seconds_each`` fit in the time left less
        ``after`` (all of them without a budget; 0 when none fits)."""
        if self.deadline is None or seconds_each <= 0:
            return count
        return max(0, min(count, int((self.remaining() - after) / seconds_each)))

    def stop_at(self, *, after: float = 0.0) -> float | None:
        """The ``TrainConfig.deadline`` that leaves ``after`` seconds for what follows."""
        return None if self.deadline is None else self.deadline - after


def _expert(args: Any) -> bool:
    """Whether the run trains an expert: a model for part of the noise levels, which samples
    only with the others."""
    return tuple(getattr(args, "noise_range", (0.0, 1.0))) != (0.0, 1.0)


def preview_rows(args: Any, budget: Budget, count: int, seconds_each: float) -> int:
    """Rows of a training run's preview: those the time left allows, none for an expert and
    none on the ranks other than 0 under torchrun (rank 0 writes the preview)."""
    if _expert(args) or not main_process():
        return 0
    return budget.fit(count, seconds_each, after=SAVE_SECONDS)


def no_preview(args: Any) -> str:
    """Why a training run made no preview."""
    if _expert(args):
        return "none, an expert samples only with the others (--experts)"
    return "none, --minutes is spent"


def train_config(
    args: Any,
    *,
    device: str = "cpu",
    steps: int | None = None,
    deadline: float | None = None,
    **fields: Any,
) -> Any:
    """The ``TrainConfig`` of the training options (``kit.training_options``) for ``device``:
    ``steps`` (default ``--steps``), ``--grad-accum``, the EMA decay (``--ema``, else diffcore's
    default for the run's length; 0 = none; ``--ema-warmup``), the precision --precision
    resolves to, ``deadline`` and any other TrainConfig ``fields``."""
    from diffcore.training import TrainConfig, default_ema_decay, resolve_precision

    steps = steps or args.steps
    ema = getattr(args, "ema", None)
    fields.setdefault("log_every", max(1, min(50, steps // 20)))
    fields.setdefault("grad_accum", getattr(args, "grad_accum", 1))
    return TrainConfig(
        steps=steps,
        batch_size=args.batch_size,
        lr=args.lr,
        ema_decay=default_ema_decay(steps) if ema is None else (ema or None),
        ema_warmup=getattr(args, "ema_warmup", False),
        precision=resolve_precision(getattr(args, "precision", "auto"), device),
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        deadline=deadline,
        **fields,
    )


def print_result(result: Any) -> None:
    """The last line of a training command: where it stopped, its loss, the model's folder."""
    late = " (stopped by --minutes)" if getattr(result, "stopped_early", False) else ""
    print(f"trained to step {result.step}{late}, loss {result.loss:.4f}: {result.final_model}")
