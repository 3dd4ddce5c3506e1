"""A check PIL leaves out: that a PNG's pixel data is as long as its header says.

PIL fills the rows a PNG's compressed pixel stream does not hold with zeros, without a word,
when the stream ends cleanly before the image does (a header claiming more rows than were
written). A training set would then hold black bands nobody drew.
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["check_png_length"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # samples per pixel of each colour type
ADAM7 = [
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
]


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk, up to IEND or the end of the bytes."""
    chunks, at = [], len(SIGNATURE)
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        chunks.append((kind, data[at + 8 : at + 8 + length]))
        if kind == b"IEND":
            break
        at += 12 + length
    return chunks


def _raw_length(width: int, height: int, bits: int, interlaced: bool) -> int:
    """Bytes of filtered scanlines (one filter byte per row) a width x height image holds."""
    passes = ADAM7 if interlaced else [(0, 0, 1, 1)]
    total = 0
    for x0, y0, dx, dy in passes:
        w, h = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if w > 0 and h > 0:
            total += h * (1 + -(-w * bits // 8))
    return total


def check_png_length(data: bytes, where: str) -> None:
    """Raise ValueError naming ``where`` when the PNG ``data`` (already decoded by PIL, so its
    header is sound) holds fewer pixel bytes than its header promises."""
    chunks = _chunks(data)
    header = next((body for kind, body in chunks if kind == b"IHDR"), b"")
    if len(header) != 13:
        raise ValueError(f"{where} is not a whole PNG: no 13-byte IHDR header")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    expected = _raw_length(width, height, depth * CHANNELS.get(colour, 1), interlace == 1)
    stream = b"".join(body for kind, body in chunks if kind == b"IDAT")
    try:
        # max_length: never inflate more than the header allows (a zlib bomb stops here)
        held = len(zlib.decompressobj().decompress(stream, expected))
    except zlib.error as err:
        raise ValueError(f"{where} is not a whole PNG: its pixel data is damaged ({err})") from err
    if held < expected:
        raise ValueError(
            f"{where} is not a whole PNG: its pixel data holds {held} of the {expected} bytes "
            f"its {width}x{height} header promises"
        )
