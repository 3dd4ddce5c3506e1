"""Few-call sampling by distillation: a student learns to do in one DDIM step what its teacher
does in two (progressive distillation, Salimans & Ho 2022, https://arxiv.org/abs/2202.00512),
and the halving repeats until the student needs as few network calls as asked for.

Why progressive rather than consistency distillation (Song et al. 2023): every round is a plain
regression onto a deterministic target that the teacher's exact DDIM steps compute, so it
converges in a few thousand optimiser steps with the squared error, on the same loop, data and
conditioning as ordinary training. Consistency distillation reports its numbers with an LPIPS
distance (a network downloaded from a model hub, which our machines cannot reach) and a slowly
updated target network. Another method is one more objective with the same
``loss(net, x0, generator, **cond)`` as ``GaussianProcess.loss``, trained by the same loop.

A distilled model is an ordinary model folder plus ``sampling.json`` (``diffcore.io``): it
samples through the same pipelines, with DDIM on the trailing grid at its step count by default.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from diffcore._utils import per_sample, stratified_time
from diffcore.denoisers.protocols import Denoiser
from diffcore.denoisers.transforms import Clamped
from diffcore.io import WEIGHTS_NAME, load_weights, write_sampling
from diffcore.schedules import trailing_grid
from diffcore.training.config import TrainResult

__all__ = ["ProgressiveDistillation", "distill", "distill_rounds", "halvings"]


def _ddim(x: Tensor, denoised: Tensor, sigma: Tensor, sigma_next: Tensor) -> Tensor:
    """One deterministic DDIM step in variance-exploding coordinates (per-sample levels)."""
    ratio = per_sample(sigma_next / sigma, x)
    return ratio * x + (1.0 - ratio) * denoised


@dataclass(frozen=True)
class ProgressiveDistillation:
    """The objective of one round: at a level of the student's grid (``trailing_grid`` of the
    process's schedule with ``steps`` steps), the student's estimate of x0 must be the one that
    makes a single DDIM step land where two DDIM steps of ``teacher`` land (Salimans & Ho,
    algorithm 2), weighted by max(SNR, 1) on the x0 error ("truncated SNR").

    teacher: a ``Denoiser`` (a network seen through ``process.denoiser``, or an exact one).
    process: the student's ``GaussianProcess`` (its schedule and parameterization).
    steps: the student's number of DDIM steps; the teacher walks twice as many.
    """

    teacher: Denoiser
    process: Any
    steps: int

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")

    def loss(
        self, net: Any, x0: Tensor, generator: torch.Generator | None = None, **cond: Any
    ) -> Tensor:
        """The round's loss (a scalar) for a batch x0 (B, ...): levels and noise come from
        ``generator``; ``cond`` goes to both the teacher and the student."""
        grid = trailing_grid(self.process.schedule, 2 * self.steps).to(x0.device)
        u = stratified_time(x0.shape[0], generator, x0.device, 0.0, 1.0)
        i = (u * self.steps).long().clamp(max=self.steps - 1)
        s0, s1, s2 = grid[2 * i], grid[2 * i + 1], grid[2 * i + 2]
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x = x0 + per_sample(s0, x0) * eps
        with torch.no_grad():
            x1 = _ddim(x, self.teacher(x, s0, **cond).to(x.dtype), s0, s1)
            x2 = _ddim(x1, self.teacher(x1, s1, **cond).to(x.dtype), s1, s2)
            # the x0 for which one step from s0 lands on x2; float64 because x2 - r * x cancels
            r = per_sample(s2 / s0, x).double()
            target = ((x2.double() - r * x.double()) / (1.0 - r)).float()
        student = self.process.denoiser(net)(x, s0, **cond)
        err = (student.float() - target).pow(2).flatten(1).mean(1)
        weight = s0.pow(-2).clamp(min=1.0)  # truncated SNR: max(SNR, 1), SNR = 1 / sigma^2
        return (err * weight.to(err)).mean()


def halvings(teacher_steps: int, steps: int) -> list[int]:
    """The students' step counts from a teacher sampling in ``teacher_steps`` down to ``steps``:
    halvings(32, 4) == [16, 8, 4]."""
    for name, value in (("teacher_steps", teacher_steps), ("steps", steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    rounds, n = [], teacher_steps
    while n > steps and n % 2 == 0:
        n //= 2
        rounds.append(n)
    if not rounds or rounds[-1] != steps:
        raise ValueError(
            f"teacher_steps must be steps times a power of two (at least 2 * steps), got "
            f"teacher_steps={teacher_steps}, steps={steps}"
        )
    return rounds


def distill_rounds(
    student: nn.Module,
    teacher: Denoiser,
    *,
    process: Any,
    teacher_steps: int,
    steps: int,
    out_dir: str | Path,
    train_round: Callable[[nn.Module, ProgressiveDistillation, Path], TrainResult],
    teacher_of: Callable[[nn.Module], Denoiser] | None = None,
) -> list[Path]:
    """Halve the teacher's DDIM steps round after round down to ``steps``; returns each round's
    model folder (``out_dir/steps_<n>/final``, with its ``sampling.json``).

    student: the network trained in place (start it as a copy of the teacher's network).
    teacher: round one's teacher, sampling in ``teacher_steps`` DDIM steps.
    train_round(student, objective, folder): one round of the domain's training (its data,
    its condition dropout) with ``objective.loss`` in place of the process's loss; returns the
    loop's ``TrainResult``. Rounds resume: a finished round is loaded, not trained again.
    teacher_of(network): how a finished round becomes the next teacher (default:
    ``process.denoiser``; wrap it, e.g. in ``Clamped``, the way the pipeline samples).
    """
    teacher_of = teacher_of or process.denoiser
    out_dir = Path(out_dir)
    folders = []
    for n in halvings(teacher_steps, steps):
        final = out_dir / f"steps_{n}" / "final"
        if not (final / WEIGHTS_NAME).is_file():
            objective = ProgressiveDistillation(teacher, process, n)
            final = Path(train_round(student, objective, final.parent).final_model)
            write_sampling(
                final,
                {"sampler": "ddim", "steps": n, "options": {"grid": "trailing"}},
                origin={"method": "progressive distillation", "teacher_steps": 2 * n},
            )
        load_weights(student, final / WEIGHTS_NAME)  # the round's EMA weights, if it kept EMA
        folders.append(final)
        teacher = teacher_of(copy.deepcopy(student).eval().requires_grad_(False))
    return folders


def distill(
    teacher: nn.Module,
    train_round: Callable[[nn.Module, ProgressiveDistillation, Path], TrainResult],
    *,
    teacher_steps: int,
    steps: int,
    out_dir: str | Path,
    clamp: tuple[float, float] | None = None,
) -> list[Path]:
    """:func:`distill_rounds` for a trained model with a ``process`` (an image or spectrogram
    model): the student starts as its copy, and every teacher is the model's denoiser clamped
    into ``clamp`` (the pipeline's data range), as the pipeline samples it. ``teacher`` must be
    on the device ``train_round`` trains on."""

    def teacher_of(net: nn.Module) -> Denoiser:
        denoiser = net.process.denoiser(net)
        return denoiser if clamp is None else Clamped(denoiser, *clamp)

    return distill_rounds(
        copy.deepcopy(teacher).train().requires_grad_(True),
        teacher_of(teacher.eval()),
        process=teacher.process,
        teacher_steps=teacher_steps,
        steps=steps,
        out_dir=out_dir,
        train_round=train_round,
        teacher_of=teacher_of,
    )
