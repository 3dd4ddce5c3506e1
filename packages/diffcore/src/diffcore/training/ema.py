"""Exponential moving average of a model's weights (Polyak averaging; used by every modern
diffusion model since DDPM, Ho et al. 2020, Appendix B)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


class EMA:
    """fp32 shadow copy of a model's parameters, updated after each optimizer step as

        ema <- decay * ema + (1 - decay) * param

    Buffers (e.g. normalisation statistics) are not averaged: they are copied as they are.
    The shadow stays in fp32 even when the model is half precision, so small updates of size
    ``(1 - decay) * delta`` are not rounded away.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        # named_parameters() lists a tied tensor once, so ties stay ties in averaged_model().
        self.params = {
            name: p.detach().to(torch.float32, copy=True) for name, p in model.named_parameters()
        }
        self.buffers = {name: b.detach().clone() for name, b in model.named_buffers()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            # lerp: ema + (1 - decay) * (p - ema), the same average in one rounding.
            self.params[name].lerp_(p.detach().to(torch.float32), 1.0 - self.decay)
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
