"""Refinement sampling for token models trained on substitution (``SubstitutionProcess``).

Same signature as the masked samplers (``diffcore.samplers.discrete``): the positions of x that
hold ``mask_id`` are generated, every other token is context. They start as draws from the
process's prior; each step predicts every generated position (x0_hat), then substitutes again a
share s (the next level) of them, so later steps see a sequence that is more and more right and
may still change any generated token, which masked samplers never revisit.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from diffcore.denoisers.protocols import TokenDenoiser
from diffcore.processes.substitution import SubstitutionProcess
from diffcore.samplers.discrete import (
    _candidates,
    _check_temperature,
    _check_top_p,
    _Network,
    _report,
    _setup,
)
from diffcore.samplers.step import Callback, Step
from diffcore.seeding import Generator, rand

__all__ = ["sample_substitute"]

Resample = Literal["random", "confidence"]


@torch.no_grad()
def sample_substitute(
    denoiser: TokenDenoiser,
    x: Tensor,
    schedule: Tensor,
    /,
    *,
    generator: Generator = None,
    callback: Callback | None = None,
    mask_id: int,
    process: SubstitutionProcess,
    known: Tensor | None = None,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    top_p: float | None = None,
    resample: Resample = "random",
    time_independent: bool = False,
) -> Tensor:
    """Predict, substitute a share of the prediction again, repeat (cold diffusion for tokens).

    x: (B, L) tokens, ``mask_id`` where to generate; schedule: severities from 1 (or less)
    down to 0; process: the ``SubstitutionProcess`` the denoiser was trained on (its prior
    draws the start, its replacement rows the re-substitutions).
    resample: which generated positions are substituted again at the next level s: "random"
    (each with probability s, as in training: direct refinement) or "confidence" (the
    round(s * n) whose predicted token was least probable, so the surest survive).
    temperature / top_p: how x0_hat is drawn from the logits (0: argmax).
    time_independent: accepted for the common signature (logits are never reused: x changes).
    Returns (B, L) tokens with no mask left.
    """
    _check_temperature(temperature)
    _check_top_p(top_p)
    if resample not in ("random", "confidence"):
        raise ValueError(f"resample must be 'random' or 'confidence', got {resample!r}")
    if not isinstance(process, SubstitutionProcess):
        raise TypeError(f"process must be a SubstitutionProcess, got {type(process).__name__}")
    x, levels = _setup(x, schedule, mask_id, known, mask)
    free = x == mask_id
    x = torch.where(free, process.draw_prior(x.shape, generator, x.device), x)
    net = _Network(denoiser, mask_id, reuse=False)
    total = len(levels) - 1
    for i in range(total):
        t, s = levels[i], levels[i + 1]
        logp = net(x, t)
        candidate = _candidates(logp, free, temperature, generator, top_p)
        x0_hat = torch.where(free, candidate, x)
        if s == 0.0:
            x = x0_hat
        else:
            if resample == "random":
                again = free & (rand(x.shape, generator, device=x.device, dtype=torch.float64) < s)
            else:
                sure = logp.gather(-1, x0_hat.unsqueeze(-1)).squeeze(-1).double()
                sure = torch.where(free, sure, torch.inf)  # context is never chosen
                rank = sure.argsort(1).argsort(1)  # 0 = least sure
                count = (s * free.sum(1)).round().long()
                again = free & (rank < count[:, None])
            x = process.substitute(x0_hat, again, generator)
        _report(callback, Step(i, total, t, s), x, x0_hat)
    return x
