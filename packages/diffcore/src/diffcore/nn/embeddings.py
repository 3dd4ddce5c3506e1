"""Noise-level and condition embeddings for the U-Net.

The U-Net sums three embeddings into one vector per sample, which every residual block turns
into a per-channel scale and shift: the noise level (always), a class label (optional, with a
"null" label for classifier-free guidance) and a pooled context vector (optional, e.g. a caption
embedding).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_features(t: Tensor, dim: int, *, scale: float = 1000.0) -> Tensor:
    """Transformer-style sinusoidal features of a scalar per sample.

    t: (B,) noise-level input, any real range: continuous time in [0, 1] or a log-SNR in about
    [-20, 20]. ``scale`` stretches it so that [0, 1] spans the periods DDPM used for integer steps
    0..1000 (Ho et al. 2020, https://arxiv.org/abs/2006.11239); frequencies run geometrically
    from 1 to 1/10000 (Vaswani et al. 2017), so a log-SNR range is covered as well.
    Returns (B, dim) float32: ``[cos(f_k * scale * t), sin(f_k * scale * t)]``.
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"sinusoidal feature size must be an even number >= 2, got {dim}")
    half = dim // 2
    freqs = torch.exp(
        -math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    args = (t.to(torch.float32) * scale)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class TimeEmbedding(nn.Module):
    """Sinusoidal features of the noise level followed by a two-layer MLP: (B,) -> (B, dim)."""

    def __init__(self, features: int, dim: int, *, scale: float = 1000.0) -> None:
        super().__init__()
        self.features = features
        self.scale = scale
        self.mlp = nn.Sequential(nn.Linear(features, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal_features(t, self.features, scale=self.scale))


class LabelEmbedding(nn.Module):
    """Learned class embedding with one extra *null* label at index ``num_classes``.

    Classifier-free guidance (Ho & Salimans 2022, https://arxiv.org/abs/2207.12598) trains the
    same network conditionally and unconditionally by replacing labels with the null label at
    random; at sampling time the null label gives the unconditional prediction.
    labels: (B,) long in [0, num_classes] -> (B, dim).
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, labels: Tensor) -> Tensor:
        return self.table(labels)


class ContextEmbedding(nn.Module):
    """Projection of a pooled conditioning vector (e.g. a caption embedding): (B, C) -> (B, dim)."""

    def __init__(self, context_dim: int, dim: int) -> None:
        super().__init__()
        self.context_dim = context_dim
        self.mlp = nn.Sequential(nn.Linear(context_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, context: Tensor) -> Tensor:
        return self.mlp(context)
