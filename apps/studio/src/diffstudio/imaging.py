"""Images between the page and the pipelines: PNG data URLs <-> tensors (C, H, W) in [-1, 1]."""

from __future__ import annotations

import base64
import binascii
import io

import torch
from PIL import Image
from torch import Tensor

MAX_SIDE = 2048  # pixels; a decompression bomb is refused before it is decoded
PREFIX = "data:image/png;base64,"


def png_urls(images: Tensor) -> list[str]:
    """(N, C, H, W) in [-1, 1] -> N PNG data URLs (8-bit grey or RGB)."""
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    urls = []
    for image in pixels:
        array = image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        urls.append(PREFIX + base64.b64encode(buffer.getvalue()).decode("ascii"))
    return urls


def open_png(url: str, what: str) -> Image.Image:
    """A data URL (or bare base64) of a PNG/JPEG -> a PIL image; ValueError naming ``what``."""
    data = url.split(",", 1)[1] if url.startswith("data:") else url
    try:
        raw = base64.b64decode(data, validate=True)
        image = Image.open(io.BytesIO(raw))
        if max(image.size) > MAX_SIDE:
            raise ValueError(f"{what} is {image.size[0]}x{image.size[1]}; at most {MAX_SIDE}")
        image.load()
    except (binascii.Error, OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"{what} is not a PNG data URL ({err})") from None
    return image


def image_tensor(url: str, channels: int, size: tuple[int, int], what: str = "image") -> Tensor:
    """A PNG data URL -> (C, H, W) in [-1, 1] at the model's size (resized when it differs)."""
    image = open_png(url, what).convert("L" if channels == 1 else "RGB")
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    pixels = pixels.reshape(height, width, channels).permute(2, 0, 1)
    return pixels.float() / 127.5 - 1


def mask_tensor(url: str, size: tuple[int, int]) -> Tensor:
    """A mask PNG (white = repaint, as in diffusers) -> (1, H, W) bool at the model's size: a
    pixel is repainted where at least a quarter of the drawn area over it is white."""
    image = open_png(url, "mask")
    if image.mode in ("RGBA", "LA"):  # a drawn layer: paint where it is opaque and light
        grey = Image.new("L", image.size, 0)
        grey.paste(image.convert("L"), mask=image.getchannel("A"))
        image = grey
    image = image.convert("L")
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BOX)
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return (pixels.reshape(1, height, width) >= 64).clone()
