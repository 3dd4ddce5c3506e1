"""Building blocks of the 2-D U-Net: normalisation, residual blocks, attention, resampling.

Layout follows the "improved DDPM" / ADM U-Net (Nichol & Dhariwal 2021,
https://arxiv.org/abs/2105.05233): pre-activation residual blocks whose embedding enters as an
adaptive scale and shift of the second normalisation, and zero-initialised output convolutions so
that every residual branch starts as the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

# The one normalisation every block uses, SiLU((1 + scale) * GroupNorm(x) + shift), lives with
# the kernels: a fused Triton version replaces exactly this composition on CUDA at inference.
from diffcore.kernels.group_norm_silu import group_norm_silu


class GroupNormSiLU(nn.Module):
    """Module form of :func:`group_norm_silu` holding the GroupNorm's affine parameters."""

    def __init__(self, channels: int, groups: int, eps: float = 1e-5) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"norm groups ({groups}) must divide the channel count ({channels})")
        self.groups = groups
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(
        self, x: Tensor, scale: Tensor | None = None, shift: Tensor | None = None
    ) -> Tensor:
        return group_norm_silu(x, self.groups, self.weight, self.bias, scale, shift, self.eps)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters so the residual branch it ends starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """Pre-activation residual block conditioned on an embedding.

    x: (B, C_in, H, W), emb: (B, E) -> (B, C_out, H, W).
    h = conv(norm_silu(x)); h = conv(dropout(norm_silu(h, scale, shift))); return skip(x) + h.
    """

    def __init__(
        self, in_ch: int, out_ch: int, emb_dim: int, *, groups: int, dropout: float
    ) -> None:
        super().__init__()
        self.norm1 = GroupNormSiLU(in_ch, groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_ch))
        self.norm2 = GroupNormSiLU(out_ch, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(self.norm1(x))
        scale, shift = self.modulation(emb).chunk(2, dim=1)  # (B, C_out) each
        h = self.conv2(self.dropout(self.norm2(h, scale, shift)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over all pixels, as a residual block.

    x: (B, C, H, W) -> (B, C, H, W); C must be a multiple of ``head_dim``. Uses
    ``scaled_dot_product_attention`` so fused (flash / memory-efficient) kernels apply.
    """

    def __init__(self, channels: int, head_dim: int, *, groups: int) -> None:
        super().__init__()
        if channels % head_dim:
            raise ValueError(f"head_dim ({head_dim}) must divide the channel count ({channels})")
        self.heads = channels // head_dim
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        qkv = self.qkv(self.norm(x))
        q, k, v = rearrange(qkv, "b (three h d) y x -> three b h (y x) d", three=3, h=self.heads)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, H*W, head_dim)
        h = rearrange(h, "b h (y x) d -> b (h d) y x", y=height, x=width)
        return x + self.out(h)


class Downsample(nn.Module):
    """Strided 3x3 convolution halving H and W (which the U-Net keeps even): (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour doubling then a 3x3 convolution (no checkerboard artefacts of transposed
    convolutions, Odena et al. 2016): (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
