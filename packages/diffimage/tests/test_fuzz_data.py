"""Fuzzing the image file readers: damaged PNG/JPEG bytes give a ValueError naming the file or
the right pixels, never another exception type, a hang or wrong pixels.

The seed corpus is made here: small PNGs (grey, RGB, RGBA, palette, 16-bit) and JPEGs, then
truncated, overwritten, given damaged CRCs or absurd sizes (decompression bombs).
Run with ``--hypothesis-show-statistics`` to see how many cases ran.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from diffimage.images import load_image_files, load_mask

FUZZ = settings(max_examples=300)  # deterministic: the root conftest's hypothesis profile
SIZE = (6, 5)  # (H, W) of every seed image


def _pixels(mode: str) -> Image.Image:
    g = torch.Generator().manual_seed(0)
    rgba = torch.randint(0, 256, (SIZE[0], SIZE[1], 4), generator=g, dtype=torch.uint8)
    image = Image.frombytes("RGBA", (SIZE[1], SIZE[0]), rgba.numpy().tobytes())
    return image.convert(mode)


def _encode(mode: str, fmt: str) -> bytes:
    out = io.BytesIO()
    image = _pixels(mode)
    if mode == "I;16":
        image = _pixels("L").convert("I").point(lambda v: v * 257).convert("I;16")
    image.save(out, format=fmt)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _interlaced_png() -> bytes:
    """The RGB seed as an Adam7-interlaced PNG (PIL reads these but cannot write them)."""
    image, (h, w) = _pixels("RGB"), SIZE
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2)]
    raw = b""
    for x0, y0, dx, dy in [*passes, (0, 1, 1, 2)]:
        for y in range(y0, h, dy):
            row = [image.getpixel((x, y)) for x in range(x0, w, dx)]
            raw += b"\x00" + bytes(v for pixel in row for v in pixel) if row else b""
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        _chunk(kind, body)
        for kind, body in [(b"IHDR", header), (b"IDAT", zlib.compress(raw)), (b"IEND", b"")]
    )


SEEDS = {
    f"{mode}.{fmt.lower()}": _encode(mode, fmt)
    for mode, fmt in [
        ("L", "PNG"),
        ("RGB", "PNG"),
        ("RGBA", "PNG"),
        ("P", "PNG"),
        ("I;16", "PNG"),
        ("1", "PNG"),
        ("L", "JPEG"),
        ("RGB", "JPEG"),
    ]
}
SEEDS["RGB-interlaced.png"] = _interlaced_png()


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but holds one row of pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    rows = zlib.compress(b"\x00" * (min(width, 64) + 1))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", rows)
        + _chunk(b"IEND", b"")
    )


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG with the size in its frame header (SOF0) overwritten."""
    data = bytearray(SEEDS["L.jpeg"])
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@st.composite
def damaged(draw: st.DrawFn) -> tuple[str, bytes]:
    """A seed image, truncated, overwritten in a few places and/or cut with junk appended."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    data += draw(st.binary(max_size=8))
    return name, bytes(data)


def _png_chunks(data: bytes) -> list[tuple[int, bytes]]:
    """(offset of the CRC, chunk type) of every chunk of a well-formed PNG."""
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        chunks.append((at + 8 + length, data[at + 4 : at + 8]))
        at += 12 + length
    return chunks


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _read(path: Path) -> torch.Tensor | None:
    """The pixels (1, 3, H, W) read from ``path``, or None after a ValueError that names it."""
    try:
        images, files = load_image_files([path], channels=3, size=SIZE)
    except ValueError as err:
        assert str(path) in str(err), f"the error does not name the file: {err}"
        return None
    assert files == [path]
    assert images.shape == (1, 3, *SIZE) and images.dtype == torch.float32
    assert images.isfinite().all() and images.abs().max() <= 1.0
    return images


def _expected(name: str) -> torch.Tensor:
    """What an undamaged seed decodes to, as (1, 3, H, W) in [-1, 1]."""
    image = Image.open(io.BytesIO(SEEDS[name])).convert("RGB")
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.view(1, *SIZE, 3).permute(0, 3, 1, 2).float() / 127.5 - 1


def test_the_seed_images_read_back_as_their_pixels(folder):
    for name in SEEDS:
        path = folder / name
        path.write_bytes(SEEDS[name])
        images = _read(path)
        assert images is not None and torch.allclose(images, _expected(name), atol=1e-6)
    assert torch.equal(_expected("RGB-interlaced.png"), _expected("RGB.png"))


@FUZZ
@given(damaged())
@example(("RGB.png", b""))  # an empty file
@example(("RGB.png", SEEDS["RGB.png"][:40]))  # cut inside the first IDAT
@example(("RGB.jpeg", SEEDS["RGB.jpeg"][:200]))  # cut inside the scan
@example(("L.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30))  # a signature and nothing else
def test_damaged_image_files_give_a_named_error_or_pixels(folder, case):
    name, data = case
    path = folder / f"damaged.{name.split('.')[-1]}"
    path.write_bytes(data)
    _read(path)
    try:
        mask = load_mask(path, size=SIZE)
    except ValueError as err:
        assert str(path) in str(err)
    else:
        assert mask.shape == (1, 1, *SIZE) and mask.dtype == torch.bool


@FUZZ
@given(st.sampled_from([n for n in sorted(SEEDS) if n.endswith(".png")]), st.data())
def test_a_damaged_png_crc_gives_a_named_error_or_the_right_pixels(folder, name, data):
    # PIL checks the CRC of the chunks it parses but not of the pixel data; either way the
    # reader must never return anything but the image's own pixels.
    seed = bytearray(SEEDS[name])
    crc, _ = data.draw(st.sampled_from(_png_chunks(bytes(seed))), label="chunk")
    seed[crc : crc + 4] = data.draw(st.binary(min_size=4, max_size=4), label="crc")
    path = folder / "crc.png"
    path.write_bytes(bytes(seed))
    images = _read(path)
    assert images is None or torch.allclose(images, _expected(name), atol=1e-6)


@settings(FUZZ, max_examples=100)
@given(st.integers(1, 0x7FFF_FFFF), st.integers(1, 0x7FFF_FFFF))
@example(65_535, 65_535)  # 4.3 gigapixels claimed: PIL's DecompressionBombError
@example(0x7FFF_FFFF, 0x7FFF_FFFF)  # the most a PNG header may claim
@example(64, 2)  # one row of pixel data for two: PIL fills the second with black
@example(20_000, 5_000)  # a bomb PIL only warns about (under 2 x MAX_IMAGE_PIXELS)
def test_a_png_claiming_more_pixels_than_it_holds_gives_a_named_error(folder, width, height):
    path = folder / "bomb.png"
    path.write_bytes(_png_claiming(width, height))
    images = _read(path)
    assert images is None or (width <= 64 and height == 1)  # only one row of pixels was written


# Sizes a JPEG decodes in milliseconds, and bombs (over 2 x MAX_IMAGE_PIXELS) it must refuse;
# the range between, where PIL only warns, would take seconds a case to decode.
JPEG_SIZES = st.tuples(st.integers(1, 2048), st.integers(1, 2048)) | st.tuples(
    st.integers(20_000, 65_535), st.integers(20_000, 65_535)
)


@settings(FUZZ, max_examples=100)
@given(JPEG_SIZES)
@example((65_535, 65_535))
def test_a_jpeg_claiming_an_absurd_size_gives_a_named_error(folder, size):
    # JPEG has no checksum: a frame header claiming more than the scan holds decodes, as PIL
    # does it, with grey for the missing blocks; a size PIL calls a bomb is refused.
    width, height = size
    path = folder / "bomb.jpeg"
    path.write_bytes(_jpeg_claiming(width, height))
    images = _read(path)
    assert images is None or width * height <= 2 * Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize("kind", [b"zTXt", b"iCCP", b"iTXt"])
def test_a_png_text_chunk_bomb_gives_a_named_error(folder, kind):
    # 5 MB of text in 5 kB: PIL refuses it with a bare ValueError that did not name the file
    prefix = b"k\x00\x00" if kind != b"iTXt" else b"k\x00\x01\x00\x00\x00"
    seed = SEEDS["L.png"]
    bomb = _chunk(kind, prefix + zlib.compress(b"a" * 5_000_000))
    path = folder / "text-bomb.png"
    path.write_bytes(seed[:33] + bomb + seed[33:])  # after the IHDR chunk
    with pytest.raises(ValueError, match="text-bomb.png"):
        load_image_files([path], channels=3, size=SIZE)
