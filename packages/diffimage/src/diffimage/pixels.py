"""Pixel tensors: value ranges, fitting one size (resize, center-crop, pad), channel
conversion, and PIL images as tensors. All operate on uint8 (..., C, H, W) unless noted."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

Fit = Literal["none", "resize", "center_crop", "pad"]
FITS: tuple[str, ...] = ("none", "resize", "center_crop", "pad")
MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # PIL mode of each channel count


def to_unit_range(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.to(torch.float32) / 127.5 - 1.0


def to_uint8(images: Tensor) -> Tensor:
    """float [-1, 1] -> uint8 [0, 255] (values outside are clipped)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def fit_image(image: Tensor, size: tuple[int, int], fit: Fit) -> Tensor:
    """Fit uint8 pixels (..., C, H, W) to ``size`` = (H', W') by ``fit``:
    resize (aspect not kept), center_crop (scale the short side to fit, crop the middle), pad
    (scale down to fit inside if larger, keep aspect, pad the borders with black)."""
    h, w = image.shape[-2:]
    th, tw = size
    if (h, w) == (th, tw):
        return image
    if fit == "resize":
        return _resample(image, th, tw)
    if fit == "center_crop":
        scale = max(th / h, tw / w)
        nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
        image = _resample(image, nh, nw)
        top, left = (nh - th) // 2, (nw - tw) // 2
        return image[..., top : top + th, left : left + tw]
    if fit == "pad":
        scale = min(1.0, th / h, tw / w)
        if scale < 1.0:
            image = _resample(image, max(1, round(h * scale)), max(1, round(w * scale)))
        h, w = image.shape[-2:]
        top, left = (th - h) // 2, (tw - w) // 2
        return F.pad(image, (left, tw - w - left, top, th - h - top), value=0)
    raise ValueError(f"unknown fit {fit!r}; expected one of {FITS}")


def _resample(image: Tensor, h: int, w: int) -> Tensor:
    batched = image.reshape(-1, *image.shape[-3:]).float()
    out = F.interpolate(batched, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8).reshape(*image.shape[:-2], h, w)


def pil_to_tensor(image: Image.Image, channels: int) -> Tensor:
    """A PIL image as uint8 (C, H, W) with ``channels`` channels (converted by PIL's rules)."""
    image = image.convert(MODES[channels])
    w, h = image.size
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.view(h, w, channels).permute(2, 0, 1).contiguous()


def convert_channels(x: Tensor, channels: int) -> Tensor:
    """Grey <-> RGB(A) for uint8 (N, C, H, W), with PIL's luma weights for RGB -> grey."""
    rgb = x[:, :3] if x.shape[1] >= 3 else x.expand(-1, 3, -1, -1)
    if channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (rgb.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
    if channels == 3:
        return rgb.contiguous()
    alpha = x[:, 3:] if x.shape[1] == 4 else torch.full_like(x[:, :1], 255)
    return torch.cat([rgb, alpha], dim=1)
