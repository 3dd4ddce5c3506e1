"""A small network that reads how corrupted an input looks: the level t in [0, 1] of a process
(a noise time, a crappification's severity) that it trained on, for refiners to start from
(``diffcore.generation.refine``). Inputs are images or spectrograms (B, C, H, W), or token
sequences (B, L) for a net with a vocabulary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn


@dataclass(frozen=True)
class LevelNetConfig:
    """in_channels: the input's channels; widths: one strided conv stage each (H and W, or the
    length, halve); vocab_size: tokens (B, L) in, embedded to widths[0] (0: continuous input)."""

    in_channels: int = 1
    widths: tuple[int, ...] = (32, 64, 128)
    vocab_size: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.in_channels < 1 or not self.widths or min(self.widths) < 1:
            raise ValueError(f"need in_channels >= 1 and positive widths, got {self}")


class LevelNet(nn.Module):
    """``net(x) -> logits (B,)``: sigmoid(logit) is the level x looks corrupted to."""

    config_class: ClassVar[type] = LevelNetConfig

    def __init__(self, config: LevelNetConfig) -> None:
        super().__init__()
        self.config = c = config
        tokens = c.vocab_size > 0
        self.embed = nn.Embedding(c.vocab_size, c.widths[0]) if tokens else None
        conv = nn.Conv1d if tokens else nn.Conv2d
        layers, cin = [], c.widths[0] if tokens else c.in_channels
        for width in c.widths:
            # no normalization: per-sample norms rescale a nearly clean input's faint noise to
            # unit size (it would look as noisy as pure noise), batch norms mix rows whose
            # levels differ, and the level is the input's scale of detail itself
            layers += [conv(cin, width, 3, 2, 1), nn.SiLU()]
            cin = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.embed is not None:  # tokens (B, L) -> (B, width, L)
            x = self.embed(x.long()).transpose(1, 2)
        h = self.body(x)
        return self.head(h.mean(tuple(range(2, h.ndim)))).squeeze(1)
