"""Exponential moving average of a model's weights (Polyak averaging; used by every modern
diffusion model since DDPM, Ho et al. 2020, Appendix B)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


def default_ema_decay(steps: int, *, share: float = 0.1, max_decay: float = 0.9999) -> float | None:
    """The EMA decay for a run of ``steps``: an averaging window ``1 / (1 - decay)`` of ``share``
    of the run, at most ``max_decay``; None (no EMA) when that window is one step or less.

    The EMA starts at the initial weights and has no bias correction, so the window must be
    short next to the run: after ``steps`` updates the random initialisation keeps a weight of
    ``decay ** steps``, about ``e ** (-1 / share)`` = e^-10 with the default share. A fixed 0.999
    would leave 0.999^400 = 67 % of it in the average after a 400-step run."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not 0 < share <= 1 or not 0 < max_decay < 1:
        raise ValueError(f"need share in (0, 1] and max_decay in (0, 1), got {share}, {max_decay}")
    window = share * steps
    if window <= 1:
        return None
    return min(max_decay, 1.0 - 1.0 / window)


class EMA:
    """fp32 shadow copy of a model's parameters, updated after each optimizer step as

        ema <- decay * ema + (1 - decay) * param

    With ``warmup`` the decay starts low and rises towards ``decay`` (:meth:`decay_at`), the
    rule of TensorFlow's ``ExponentialMovingAverage(num_updates=...)``: a fixed decay of 0.999
    would keep 0.999^400 = 67 % of the random initialisation after 400 steps.
    Buffers (e.g. normalisation statistics) are not averaged: they are copied as they are.
    The shadow stays in fp32 even when the model is half precision, so small updates of size
    ``(1 - decay) * delta`` are not rounded away.
    """

    def __init__(self, model: nn.Module, decay: float, *, warmup: bool = False) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay, self.warmup = decay, warmup
        # named_parameters() lists a tied tensor once, so ties stay ties in averaged_model().
        self.params = {
            name: p.detach().to(torch.float32, copy=True) for name, p in model.named_parameters()
        }
        self.buffers = {name: b.detach().clone() for name, b in model.named_buffers()}

    def decay_at(self, updates: int) -> float:
        """The decay of update number ``updates`` (0 for the first): ``decay``, or with warm-up
        ``min(decay, (1 + updates) / (10 + updates))``, so that early updates, which move
        away from the random initialisation, are averaged over a window that grows with them."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self, model: nn.Module, updates: int = 0) -> None:
        """Average in ``model``'s parameters; ``updates``: how many updates came before (the
        training step), which sets the decay under warm-up."""
        weight = 1.0 - self.decay_at(updates)
        for name, p in model.named_parameters():
            # lerp: ema + (1 - decay) * (p - ema), the same average in one rounding.
            self.params[name].lerp_(p.detach().to(torch.float32), weight)
        for name, b in model.named_buffers():
            self.buffers[name].copy_(b)

    def state_dict(self) -> dict[str, Tensor]:
        """Parameters and buffers by name (flat, as stored in checkpoints)."""
        return {**self.params, **self.buffers}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        expected = set(self.params) | set(self.buffers)
        if set(state) != expected:
            missing, unexpected = expected - set(state), set(state) - expected
            raise ValueError(
                f"EMA state does not match the model: missing {sorted(missing)}, "
                f"unexpected {sorted(unexpected)}"
            )
        with torch.no_grad():
            for name, t in state.items():
                target = self.params.get(name, self.buffers.get(name))
                target.copy_(t)

    @torch.no_grad()
    def averaged_model(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` holding the averaged weights (cast to the model's dtypes)."""
        out = copy.deepcopy(model)
        for name, p in out.named_parameters():
            p.copy_(self.params[name])
        for name, b in out.named_buffers():
            b.copy_(self.buffers[name])
        return out
