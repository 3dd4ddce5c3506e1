"""Shared neural-network pieces: a 2-D U-Net and its embeddings, attention masks for
``transformers`` models."""

from diffcore.nn.attention import attention_mask_for
from diffcore.nn.blocks import GroupNormSiLU, group_norm_silu
from diffcore.nn.embeddings import sinusoidal_features
from diffcore.nn.presets import load_unet_preset, presets_dir
from diffcore.nn.unet import UNet, UNetConfig

__all__ = [
    "GroupNormSiLU",
    "UNet",
    "UNetConfig",
    "attention_mask_for",
    "group_norm_silu",
    "load_unet_preset",
    "presets_dir",
    "sinusoidal_features",
]
