"""Files people look at and listen to: WAVs, spectrogram PNGs and a JSONL index of them.

Generated waveforms are levelled before they are written: a clip whose peak exceeds −1 dBFS is
scaled down to it (quiet clips are left as they are), because clamping to [-1, 1] silently
flattened a fifth of the samples of a lightly trained model into square waves.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import soundfile
import torch
from torch import Tensor

from diffaudio.spectrogram import SpectrogramConfig, save_spectrogram_png

PEAK_DBFS = -1.0  # the loudest a written clip may be; 1 dB of headroom for resampling and codecs
WAV_FORMATS = ("pcm16", "float")
_SUBTYPES = {"pcm16": "PCM_16", "float": "FLOAT"}  # soundfile's names


class Level(NamedTuple):
    """How loud a clip was and what :func:`fit_level` did to it."""

    peak: float  # largest |sample| before levelling (1.0 = full scale)
    clipped: float  # share of samples beyond full scale, which clamping would have flattened
    gain_db: float  # gain applied: 0.0, or negative when scaled down to PEAK_DBFS


def _db(amplitude: float) -> float:
    return 20 * math.log10(amplitude) if amplitude > 0 else -math.inf


def fit_level(wave: Tensor) -> tuple[Tensor, Level]:
    """``wave`` scaled so its peak is at most −1 dBFS (untouched when already below), and its
    :class:`Level`. NaN or infinite samples are a ValueError: they would be written as silence."""
    bad = int((~torch.isfinite(wave)).sum())
    if bad:
        raise ValueError(f"waveform has {bad} NaN or infinite samples of {wave.numel()}")
    peak = float(wave.abs().max()) if wave.numel() else 0.0
    clipped = float((wave.abs() > 1).float().mean()) if wave.numel() else 0.0
    limit = 10 ** (PEAK_DBFS / 20)
    if peak <= limit:
        return wave, Level(peak, clipped, 0.0)
    return wave * (limit / peak), Level(peak, clipped, _db(limit / peak))


def level_note(levels: Sequence[Level]) -> str | None:
    """One line about the clips that were scaled down (None when none was), e.g.
    "3 of 8 clips peaked above −1 dBFS (max +4.2 dBFS, 12 % of samples beyond full scale);
    scaled down to −1 dBFS"."""
    loud = [level for level in levels if level.gain_db < 0]
    if not loud:
        return None
    top = _db(max(level.peak for level in loud))
    share = sum(level.clipped for level in levels) / len(levels)  # clips share one length
    return (
        f"{len(loud)} of {len(levels)} clips peaked above {PEAK_DBFS:g} dBFS (max {top:+.1f} "
        f"dBFS, {share:.0%} of samples beyond full scale); scaled down to {PEAK_DBFS:g} dBFS"
    )


def write_wav(
    path: str | Path, wave: Tensor, sample_rate: int, *, wav_format: str = "pcm16"
) -> Path:
    """Write a mono waveform (L,) as it is: 16-bit PCM (samples clipped to [-1, 1]; see
    :func:`fit_level` to avoid that) or, with ``wav_format="float"``, 32-bit float WAV."""
    if wave.ndim != 1:
        raise ValueError(f"write_wav expects a mono waveform (L,), got {tuple(wave.shape)}")
    if wav_format not in _SUBTYPES:
        raise ValueError(f"unknown WAV format {wav_format!r}; expected one of {WAV_FORMATS}")
    path = Path(path)
    if not torch.isfinite(wave).all():
        raise ValueError(f"{path}: the waveform has NaN or infinite samples")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = wave.detach().float().cpu()
    data = data.clamp(-1, 1) if wav_format == "pcm16" else data
    soundfile.write(str(path), data.numpy(), sample_rate, subtype=_SUBTYPES[wav_format])
    return path


class Saved(NamedTuple):
    """What :func:`save_outputs` wrote: the JSONL index, and each clip's :class:`Level`."""

    index: Path
    levels: list[Level]


def save_outputs(
    out_dir: str | Path,
    waves: Tensor,
    spectrograms: Tensor,
    config: SpectrogramConfig,
    *,
    names: Sequence[str],
    records: Sequence[dict[str, Any]] | None = None,
    wav_format: str = "pcm16",
) -> Saved:
    """For each sample: ``<name>.wav`` (levelled by :func:`fit_level`) and ``<name>.png``; plus
    ``samples.jsonl`` with one line per sample (file names, ``records[i]`` and the clip's level).
    waves: (B, L); spectrograms: (B, 1, M, T) or (B, M, T)."""
    if not len(names) == waves.shape[0] == spectrograms.shape[0]:
        raise ValueError(
            f"{len(names)} names for {waves.shape[0]} waveforms and "
            f"{spectrograms.shape[0]} spectrograms"
        )
    if wav_format not in _SUBTYPES:
        raise ValueError(f"unknown WAV format {wav_format!r}; expected one of {WAV_FORMATS}")
    broken = [n for n, w in zip(names, waves, strict=True) if not torch.isfinite(w).all()]
    if broken:  # checked before anything is written
        raise ValueError(
            f"{len(broken)} of {len(names)} generated clips have NaN or infinite samples "
            f"(e.g. {broken[0]}); nothing written"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines, levels = [], []
    for i, name in enumerate(names):
        wave, level = fit_level(waves[i])
        write_wav(out / f"{name}.wav", wave, config.sample_rate, wav_format=wav_format)
        save_spectrogram_png(spectrograms[i], out / f"{name}.png", config)
        record = {"wav": f"{name}.wav", "png": f"{name}.png", **(records[i] if records else {})}
        record["level"] = {
            "peak": round(level.peak, 6),
            "clipped": round(level.clipped, 6),
            "gain_db": round(level.gain_db, 3),
        }
        lines.append(json.dumps(record))
        levels.append(level)
    index = out / "samples.jsonl"
    index.write_text("\n".join(lines) + "\n")
    return Saved(index, levels)
