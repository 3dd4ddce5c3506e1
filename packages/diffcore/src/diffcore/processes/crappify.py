"""More crappifiers (JPEG, band-limiting, masked stripes), their composition, and the short
spec strings (``"blur:3+jpeg:10"``) that name a degradation in configs and on command lines.

Every degradation here follows :mod:`diffcore.processes.degradation`'s contract: a pure
function ``(x0 (B, C, H, W), t (B,)) -> x_t`` that is exactly the identity at t = 0, keeps the
shape and takes a different severity per sample. Images and spectrograms share them: a
spectrogram is a (B, 1, mels, frames) picture whose row 0 is the lowest frequency.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from diffcore.processes.degradation import (
    Degradation,
    _per_group,
    blur,
    check_degradation_input,
    downsample,
    pixelate,
)

__all__ = [
    "CRAPPIFIERS",
    "Crappifier",
    "compose",
    "identity",
    "jpeg",
    "lowpass",
    "parse_crappifier",
    "start_stats",
    "stripes",
]


# --- JPEG ------------------------------------------------------------------------------------

# The IJG luminance quantisation table (JPEG standard, Annex K), row-major over 8 x 8 frequencies.
_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)


def _dct_matrix(n: int = 8, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The orthonormal DCT-II matrix (n, n): coefficients = M @ block @ M.T."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    m = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m.to(dtype=dtype, device=device)


def _quant_table(quality: int, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The IJG table scaled for ``quality`` in [1, 100] (libjpeg's formula), entries in
    [1, 255] as baseline JPEG (and so Pillow) stores them."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    table = torch.floor((torch.tensor(_LUMA, dtype=torch.float64) * scale + 50) / 100)
    return table.clamp(1, 255).to(dtype=dtype, device=device)


def _jpeg_blocks(x: Tensor, quality: int) -> Tensor:
    """Quantise the 8 x 8 block DCT of x (values in [-1, 1]) at ``quality``; same shape back."""
    b, c, h, w = x.shape
    ph, pw = -h % 8, -w % 8
    pixels = F.pad((x.double() + 1) * 127.5 - 128, (0, pw, 0, ph), mode="replicate")
    hh, ww = h + ph, w + pw
    blocks = pixels.reshape(b, c, hh // 8, 8, ww // 8, 8).transpose(3, 4)  # (..., 8, 8)
    m = _dct_matrix(dtype=blocks.dtype, device=x.device)
    q = _quant_table(quality, dtype=blocks.dtype, device=x.device)
    coefficients = torch.round(m @ blocks @ m.T / q) * q
    restored = (m.T @ coefficients @ m).transpose(3, 4).reshape(b, c, hh, ww)[..., :h, :w]
    return ((restored + 128) / 127.5 - 1).to(x.dtype)


def _jpeg(x0: Tensor, t: Tensor, *, min_quality: int) -> Tensor:
    t = check_degradation_input(x0, t)
    # Quality falls geometrically from 100 (t = 0: untouched, exactly) to min_quality (t = 1).
    qualities = [
        0 if s == 0 else max(1, round(100 ** (1 - s) * min_quality**s)) for s in t.tolist()
    ]
    return _per_group(x0, qualities, 0, _jpeg_blocks)


def jpeg(min_quality: int = 5) -> Degradation:
    """JPEG's lossy step: the 8 x 8 block DCT of each channel rounded to multiples of the IJG
    luminance table scaled to a quality that falls from 100 to ``min_quality`` as t goes 0 -> 1
    (what a JPEG encoder and decoder do to values in [-1, 1]; no chroma subsampling, and the
    entropy coding is lossless anyway). Edges are padded by replication to whole blocks."""
    if isinstance(min_quality, bool) or not isinstance(min_quality, int):
        raise ValueError(f"min_quality must be an int in [1, 100], got {min_quality!r}")
    if not 1 <= min_quality <= 100:
        raise ValueError(f"min_quality must be an int in [1, 100], got {min_quality}")
    return partial(_jpeg, min_quality=min_quality)


# --- band-limiting and stripes ---------------------------------------------------------------


def _fill_rows(x: Tensor, keep: Tensor, fill: float, dim: int) -> Tensor:
    """x with the rows (dim 2) or columns (dim 3) where ``keep`` is False set to ``fill``."""
    shape = [1, 1, 1, 1]
    shape[dim] = -1
    return torch.where(keep.reshape(shape), x, torch.full_like(x, fill))


def _lowpass(x0: Tensor, t: Tensor, *, fill: float) -> Tensor:
    t = check_degradation_input(x0, t)
    rows = x0.shape[2]
    kept = [rows - round(s * rows) for s in t.tolist()]  # rows kept from the bottom (row 0)
    index = torch.arange(rows, device=x0.device)
    return _per_group(x0, kept, rows, lambda x, k: _fill_rows(x, index < k, fill, 2))


def lowpass(fill: float = -1.0) -> Degradation:
    """Band-limit a spectrogram: keep the lowest ``(1 - t)`` share of its rows (row 0 = lowest
    frequency) and set the others to ``fill`` (silence: -1 for spectrograms scaled to [-1, 1]).
    At t = 1 every row is ``fill``: a constant picture, so generation can start there."""
    return partial(_lowpass, fill=float(fill))


def _spread_order(n: int) -> list[int]:
    """Rows 0..n-1 ordered so that any prefix is spread evenly (golden-ratio sequence)."""
    golden = (math.sqrt(5) - 1) / 2
    return sorted(range(n), key=lambda i: ((i + 1) * golden) % 1.0)


def _stripes(x0: Tensor, t: Tensor, *, dim: int, fill: float) -> Tensor:
    t = check_degradation_input(x0, t)
    n = x0.shape[dim]
    order = torch.tensor(_spread_order(n), device=x0.device)
    counts = [round(s * n) for s in t.tolist()]

    def apply(x: Tensor, k: int) -> Tensor:
        keep = torch.ones(n, dtype=torch.bool, device=x.device)
        keep[order[:k]] = False
        return _fill_rows(x, keep, fill, dim)

    return _per_group(x0, counts, 0, apply)


def stripes(axis: str = "frequency", fill: float = -1.0) -> Degradation:
    """Set a share t of the rows ("frequency": spectrogram rows, image rows) or columns ("time")
    to ``fill``, in a fixed order that spreads them evenly; the masked set only grows with t
    (SpecAugment's masks, made deterministic so the restorer can be asked to undo them)."""
    dims = {"frequency": 2, "time": 3}
    if axis not in dims:
        raise ValueError(f"axis must be 'frequency' or 'time', got {axis!r}")
    return partial(_stripes, dim=dims[axis], fill=float(fill))


# --- composition and names -------------------------------------------------------------------


def identity(x0: Tensor, t: Tensor) -> Tensor:
    """The degradation that changes nothing (a process of Gaussian noise alone, "noise")."""
    check_degradation_input(x0, t)
    return x0


def _compose(x0: Tensor, t: Tensor, *, parts: tuple[Degradation, ...]) -> Tensor:
    for degrade in parts:
        x0 = degrade(x0, t)
    return x0


def compose(*parts: Degradation) -> Degradation:
    """Apply ``parts`` in order, all at the same severity: ``compose(blur(), jpeg())``."""
    if not parts or not all(callable(p) for p in parts):
        raise ValueError("compose takes one or more degradations (callables (x0, t) -> x_t)")
    return parts[0] if len(parts) == 1 else partial(_compose, parts=tuple(parts))


@dataclass(frozen=True)
class Crappifier:
    """One name of a spec string: how to build it from its optional number, and what that
    number means (for help texts and errors)."""

    build: Callable[[float | None], Degradation]
    parameter: str


def _int_or_default(value: float | None, name: str) -> int | None:
    if value is None:
        return None
    if value != int(value):
        raise ValueError(f"{name} must be a whole number, got {value}")
    return int(value)


def _build(factory: Callable[..., Degradation], name: str, integer: bool = False) -> Callable:
    def build(value: float | None) -> Degradation:
        if value is None:
            return factory()
        return factory(_int_or_default(value, name) if integer else value)

    return build


CRAPPIFIERS: dict[str, Crappifier] = {
    "blur": Crappifier(_build(blur, "blur"), "largest Gaussian blur sigma in pixels (3)"),
    "downsample": Crappifier(
        _build(downsample, "downsample", integer=True), "smallest side in pixels (4)"
    ),
    "pixelate": Crappifier(_build(pixelate, "pixelate", integer=True), "largest block (8)"),
    "jpeg": Crappifier(_build(jpeg, "jpeg", integer=True), "lowest JPEG quality, 1-100 (5)"),
    "lowpass": Crappifier(lambda v: lowpass(), "no number: rows above the cut become silence"),
    "freq_mask": Crappifier(lambda v: stripes("frequency"), "no number: masked rows"),
    "time_mask": Crappifier(lambda v: stripes("time"), "no number: masked columns"),
    "noise": Crappifier(lambda v: identity, "Gaussian noise std at t = 1, growing linearly (1)"),
}
"""The names a spec string may use. "noise" is not a degradation function: it makes the
process add Gaussian noise of std ``value * t`` (see :func:`parse_crappifier`)."""


def parse_crappifier(
    spec: str, *, allowed: Sequence[str] | None = None
) -> tuple[Degradation, float]:
    """``"blur:3+jpeg:10+noise:0.5"`` -> (the composed degradation, the noise slope).

    Names are joined by "+" and applied left to right; each may carry one number after ":"
    (its meaning: ``CRAPPIFIERS[name].parameter``). "noise:s" adds no function; it returns the
    slope s of the Gaussian noise std ``s * t`` the process adds (0 when absent).
    allowed: the names a domain accepts (default: all)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("a crappifier spec names one or more of " + ", ".join(CRAPPIFIERS))
    allowed = tuple(allowed or CRAPPIFIERS)
    parts: list[Degradation] = []
    slope = 0.0
    for item in spec.split("+"):
        name, _, number = item.strip().partition(":")
        if name not in allowed:
            raise ValueError(
                f"unknown crappifier {name!r} in {spec!r}; expected names from "
                f"{', '.join(allowed)} joined by '+', each with an optional ':number'"
            )
        value: float | None = None
        if number:
            try:
                value = float(number)
            except ValueError:
                raise ValueError(
                    f"{name}:{number} in {spec!r}: the number must be {CRAPPIFIERS[name].parameter}"
                ) from None
        if name == "noise":
            slope = 1.0 if value is None else value
            if not slope > 0:
                raise ValueError(f"noise:{number} in {spec!r}: the std must be positive")
            continue
        parts.append(CRAPPIFIERS[name].build(value))
    return (compose(*parts) if parts else identity), slope


def start_stats(x: Tensor) -> tuple[tuple[float, float], ...]:
    """Per channel, the (mean, std) over samples of each sample's mean value: the distribution
    of the constant pictures refinement starts from (``ContinuousPipeline``). x: (N, C, ...)
    training data as the model sees it."""
    means = x.double().flatten(2).mean(2)  # (N, C)
    std = means.std(0) if len(means) > 1 else torch.zeros(means.shape[1], dtype=means.dtype)
    return tuple((float(m), float(s)) for m, s in zip(means.mean(0), std, strict=True))
