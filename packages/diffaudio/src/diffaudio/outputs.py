"""Files people look at and listen to: WAVs, spectrogram PNGs and a JSONL index of them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import soundfile
from torch import Tensor

from diffaudio.spectrogram import SpectrogramConfig, save_spectrogram_png


def write_wav(path: str | Path, wave: Tensor, sample_rate: int) -> Path:
    """Write a mono waveform (L,) as 16-bit PCM WAV (samples clipped to [-1, 1])."""
    if wave.ndim != 1:
        raise ValueError(f"write_wav expects a mono waveform (L,), got {tuple(wave.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = wave.detach().float().clamp(-1, 1).cpu().numpy()
    soundfile.write(str(path), data, sample_rate, subtype="PCM_16")
    return path


def save_outputs(
    out_dir: str | Path,
    waves: Tensor,
    spectrograms: Tensor,
    config: SpectrogramConfig,
    *,
    names: Sequence[str],
    records: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """For each sample: ``<name>.wav`` and ``<name>.png``; plus ``samples.jsonl`` with one
    line per sample (file names and ``records[i]``). waves: (B, L); spectrograms: (B, 1, M, T)
    or (B, M, T). Returns the JSONL path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not len(names) == waves.shape[0] == spectrograms.shape[0]:
        raise ValueError(
            f"{len(names)} names for {waves.shape[0]} waveforms and "
            f"{spectrograms.shape[0]} spectrograms"
        )
    lines = []
    for i, name in enumerate(names):
        write_wav(out / f"{name}.wav", waves[i], config.sample_rate)
        save_spectrogram_png(spectrograms[i], out / f"{name}.png", config)
        record = {"wav": f"{name}.wav", "png": f"{name}.png", **(records[i] if records else {})}
        lines.append(json.dumps(record))
    index = out / "samples.jsonl"
    index.write_text("\n".join(lines) + "\n")
    return index
