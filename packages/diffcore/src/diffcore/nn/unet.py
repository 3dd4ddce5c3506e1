"""The shared 2-D U-Net backbone for images and spectrograms.

A DDPM/ADM-style U-Net (Ronneberger et al. 2015; Ho et al. 2020; Nichol & Dhariwal 2021,
https://arxiv.org/abs/2105.05233): residual blocks modulated by a noise-level (+ label, + context)
embedding, self-attention at chosen resolutions and in the middle, skip connections between the
down and up paths. Inputs of any height and width are padded up to a multiple of the total
downsampling factor and the output is cropped back.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffcore.nn.blocks import (
    Downsample,
    GroupNormSiLU,
    ResBlock,
    SelfAttention,
    Upsample,
    zero_init,
)
from diffcore.nn.embeddings import ContextEmbedding, LabelEmbedding, TimeEmbedding


@dataclass(frozen=True)
class UNetConfig:
    """Shape of a :class:`UNet`. Levels are numbered from 0 (full resolution) downwards."""

    in_channels: int = 3  # channels of x (3 for RGB, 1 for grey images and spectrograms)
    out_channels: int | None = None  # channels of the output; None = same as in_channels
    channels: tuple[int, ...] = (64, 128, 256)  # width per level; H and W halve between levels
    blocks_per_level: int = 2  # residual blocks per level on the way down (one more going up)
    attention_levels: tuple[int, ...] = (2,)  # levels with self-attention after each block
    mid_attention: bool = True  # self-attention between the two residual blocks of the middle
    head_dim: int = 32  # attention heads = channels // head_dim at each attention level
    num_classes: int | None = None  # None = no labels; else labels 0..num_classes-1 + null label
    context_dim: int | None = None  # None = no context; else size of a pooled context vector
    dropout: float = 0.0  # dropout inside residual blocks
    norm_groups: int = 32  # GroupNorm groups; must divide every entry of `channels`
    time_features: int | None = None  # sinusoidal features of t; None = channels[0]
    embed_dim: int | None = None  # width of the summed embedding; None = 4 * channels[0]
    time_scale: float = 1000.0  # t is multiplied by this before the sinusoidal features
    low_res_channels: int = 0  # a cascade stage: channels of the low-resolution input (0: none)

    def __post_init__(self) -> None:
        # JSON round trips (config.json) turn tuples into lists; store tuples so configs compare
        # equal and stay hashable.
        for name in ("channels", "attention_levels"):
            value = getattr(self, name)
            if not isinstance(value, list | tuple):
                raise TypeError(f"UNetConfig.{name} must be a tuple of ints, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        self._validate()

    def _validate(self) -> None:
        if not self.channels or any(int(c) != c or c < 1 for c in self.channels):
            raise ValueError(f"UNetConfig.channels must be positive ints, got {self.channels}")
        for name in ("in_channels", "blocks_per_level", "head_dim", "norm_groups"):
            if getattr(self, name) < 1:
                raise ValueError(f"UNetConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.low_res_channels < 0:
            raise ValueError(
                f"UNetConfig.low_res_channels must be >= 0, got {self.low_res_channels}"
            )
        for name in ("out_channels", "num_classes", "context_dim", "embed_dim", "time_features"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"UNetConfig.{name} must be None or >= 1, got {value}")
        if (self.time_features or self.channels[0]) % 2:
            raise ValueError(
                "UNetConfig.time_features (default: channels[0]) must be even, got "
                f"{self.time_features or self.channels[0]}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must be in [0, 1), got {self.dropout}")
        levels = len(self.channels)
        bad = [lvl for lvl in self.attention_levels if not 0 <= lvl < levels]
        if bad:
            raise ValueError(
                f"UNetConfig.attention_levels {bad} out of range; levels are 0..{levels - 1}"
            )
        bad = [c for c in self.channels if c % self.norm_groups]
        if bad:
            raise ValueError(
                f"UNetConfig.norm_groups={self.norm_groups} must divide every channel count; "
                f"it does not divide {bad}"
            )
        attended = [self.channels[lvl] for lvl in self.attention_levels]
        attended += [self.channels[-1]] if self.mid_attention else []
        bad = [c for c in attended if c % self.head_dim]
        if bad:
            raise ValueError(
                f"UNetConfig.head_dim={self.head_dim} must divide the channels of every attention "
                f"level (and of the middle when mid_attention); it does not divide {bad}"
            )

    @property
    def levels(self) -> int:
        return len(self.channels)

    @property
    def size_multiple(self) -> int:
        """H and W are padded to a multiple of this (the total downsampling factor)."""
        return 2 ** (self.levels - 1)

    def to_dict(self) -> dict:
        """Plain-JSON form: ``UNetConfig(**config.to_dict()) == config``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class UNet(nn.Module):
    """Noise-conditioned 2-D U-Net: ``net(x, t, *, labels=None, context=None, low_res=None,
    low_res_sigma=None)``.

    x: (B, in_channels, H, W), any H and W; t: (B,) (or a scalar) noise-level input, e.g. time in
    [0, 1] or a log-SNR; labels: (B,) long in [0, num_classes], where ``num_classes`` is the null
    (unconditional) label and None means null for every sample; context: (B, context_dim), None
    means no context. A cascade stage (``low_res_channels`` > 0; Ho et al. 2021,
    https://arxiv.org/abs/2106.15282) also takes ``low_res`` (B, low_res_channels, h, w), any
    size: upsampled bilinearly to H x W and stacked onto x's channels, and ``low_res_sigma``
    (B,), the noise level it was augmented with (``diffcore.denoisers.noise_augment``; None:
    0), embedded like t. Returns (B, out_channels, H, W). Freshly built nets output exactly
    zero (zero-initialised last convolution).
    """

    config_class = UNetConfig

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise TypeError(f"UNet expects a UNetConfig, got {type(config).__name__}")
        self.config = c = config
        width = c.channels[0]
        emb = c.embed_dim or 4 * width
        block = lambda i, o: ResBlock(i, o, emb, groups=c.norm_groups, dropout=c.dropout)
        attention = lambda ch: SelfAttention(ch, c.head_dim, groups=c.norm_groups)
        stage = lambda i, o, level: _Stage(
            block(i, o), attention(o) if level in c.attention_levels else None
        )

        self.time_embed = TimeEmbedding(c.time_features or width, emb, scale=c.time_scale)
        self.label_embed = LabelEmbedding(c.num_classes, emb) if c.num_classes else None
        self.context_embed = ContextEmbedding(c.context_dim, emb) if c.context_dim else None
        self.low_res_embed = (
            TimeEmbedding(c.time_features or width, emb, scale=c.time_scale)
            if c.low_res_channels
            else None
        )
        self.conv_in = nn.Conv2d(c.in_channels + c.low_res_channels, width, 3, padding=1)

        # Down path; `skips` records the width of every activation saved for the up path.
        self.down = nn.ModuleList()
        skips, ch = [width], width
        for level, out in enumerate(c.channels):
            for _ in range(c.blocks_per_level):
                self.down.append(stage(ch, out, level))
                ch = out
                skips.append(ch)
            if level < c.levels - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)

        self.mid = nn.ModuleList([block(ch, ch), block(ch, ch)])
        self.mid_attention = attention(ch) if c.mid_attention else nn.Identity()

        # Up path: one block more per level than going down, each eating one saved skip.
        self.up = nn.ModuleList()
        for level in reversed(range(c.levels)):
            out = c.channels[level]
            for _ in range(c.blocks_per_level + 1):
                self.up.append(stage(ch + skips.pop(), out, level))
                ch = out
            if level > 0:
                self.up.append(Upsample(ch))

        self.norm_out = GroupNormSiLU(ch, c.norm_groups)
        self.conv_out = zero_init(nn.Conv2d(ch, c.out_channels or c.in_channels, 3, padding=1))

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        *,
        labels: Tensor | None = None,
        context: Tensor | None = None,
        low_res: Tensor | None = None,
        low_res_sigma: Tensor | None = None,
    ) -> Tensor:
        t = self._check_inputs(x, t, labels, context)
        emb = self.time_embed(t)
        if self.low_res_embed is not None:
            x, level = self._stack_low_res(x, low_res, low_res_sigma)
            emb = emb + self.low_res_embed(level)
        elif low_res is not None:
            raise ValueError("low_res was given to a UNet that is no cascade stage")
        if self.label_embed is not None:
            if labels is None:
                labels = torch.full_like(t, self.label_embed.null_label, dtype=torch.long)
            emb = emb + self.label_embed(labels)
        if self.context_embed is not None and context is not None:
            emb = emb + self.context_embed(context.to(emb.dtype))

        height, width = x.shape[-2:]
        multiple = self.config.size_multiple
        pad_h, pad_w = -height % multiple, -width % multiple
        if pad_h or pad_w:  # replicate padding works for any size, unlike reflect
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")

        h = self.conv_in(x)
        saved = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, _Stage) else layer(h)
            saved.append(h)
        h = self.mid[1](self.mid_attention(self.mid[0](h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, _Stage):
                h = layer(torch.cat([h, saved.pop()], dim=1), emb)
            else:
                h = layer(h)
        out = self.conv_out(self.norm_out(h))
        return out[..., :height, :width]

    def _stack_low_res(
        self, x: Tensor, low_res: Tensor | None, sigma: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """x with the upsampled low-resolution input stacked on its channels, and the level."""
        want = self.config.low_res_channels
        if low_res is None:
            raise ValueError(f"this UNet is a cascade stage: give low_res (B, {want}, h, w)")
        if low_res.ndim != 4 or low_res.shape[:2] != (x.shape[0], want):
            raise ValueError(
                f"low_res must be (B, {want}, h, w) = ({x.shape[0]}, {want}, h, w), got "
                f"{tuple(low_res.shape)}"
            )
        up = F.interpolate(low_res.to(x.dtype), size=x.shape[-2:], mode="bilinear")
        level = torch.zeros(x.shape[0], device=x.device) if sigma is None else sigma
        level = torch.as_tensor(level, device=x.device, dtype=torch.float32).expand(x.shape[0])
        return torch.cat([x, up], dim=1), level

    def _check_inputs(
        self, x: Tensor, t: Tensor, labels: Tensor | None, context: Tensor | None
    ) -> Tensor:
        """Raise on malformed inputs; return t as a (B,) tensor on x's device."""
        c = self.config
        if x.ndim != 4:
            raise ValueError(f"UNet expects x of shape (B, C, H, W), got {tuple(x.shape)}")
        batch = x.shape[0]
        if x.shape[1] != c.in_channels:
            raise ValueError(
                f"UNet was built for {c.in_channels} input channels, got x with {x.shape[1]}"
            )
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(
                f"UNet expects t of shape ({batch},) or a scalar, got {tuple(t.shape)}"
            )
        if labels is not None:
            if self.label_embed is None:
                raise ValueError("labels were given to an unconditional UNet (num_classes=None)")
            if (
                labels.dtype.is_floating_point
                or labels.dtype.is_complex
                or labels.dtype == torch.bool
            ):
                raise TypeError(f"UNet labels must be an integer tensor, got {labels.dtype}")
            if labels.shape != (batch,):
                raise ValueError(
                    f"UNet expects labels of shape ({batch},), got {tuple(labels.shape)}"
                )
            if labels.numel() and (labels.min() < 0 or labels.max() > c.num_classes):
                raise ValueError(
                    f"UNet labels must lie in [0, {c.num_classes}] ({c.num_classes} = null label), "
                    f"got values in [{int(labels.min())}, {int(labels.max())}]"
                )
        if context is not None:
            if self.context_embed is None:
                raise ValueError(
                    "context was given to a UNet built without context (context_dim=None)"
                )
            if context.shape != (batch, c.context_dim):
                raise ValueError(
                    f"UNet expects context of shape ({batch}, {c.context_dim}), "
                    f"got {tuple(context.shape)}"
                )
        return t


class _Stage(nn.Module):
    """A residual block optionally followed by self-attention: (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, block: ResBlock, attention: SelfAttention | None) -> None:
        super().__init__()
        self.block = block
        self.attention = attention or nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return self.attention(self.block(x, emb))
