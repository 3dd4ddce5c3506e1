"""diffcore's ``jpeg`` crappifier does what a real JPEG encoder and decoder (Pillow's libjpeg)
do to a greyscale image: the lossy step is the same, only integer rounding differs."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from diffcore.processes import jpeg


@pytest.mark.parametrize("quality", [10, 30, 75])
def test_jpeg_matches_pillow_to_a_fraction_of_a_grey_level(quality):
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 1, 4, 4, generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear")
    pixels = ((smooth + 0.15 * torch.rand(1, 1, 32, 32, generator=g)).clamp(0, 1) * 255).round()
    buffer = io.BytesIO()
    Image.fromarray(pixels[0, 0].numpy().astype(np.uint8), "L").save(
        buffer, "JPEG", quality=quality
    )
    pillow = torch.from_numpy(np.array(Image.open(buffer))).float()
    mine = (jpeg(quality)(pixels / 127.5 - 1, torch.ones(1))[0, 0] + 1) * 127.5
    assert float((pillow - pixels[0, 0]).abs().mean()) > 4  # JPEG itself changes the image...
    assert float((mine - pillow).abs().mean()) < 1.0  # ...and ours changes it the same way
