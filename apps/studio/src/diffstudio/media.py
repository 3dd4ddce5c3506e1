"""Sounds and sequences between the pipelines and the page: WAV and spectrogram data URLs for
audio, FASTA lines for proteins."""

from __future__ import annotations

import base64
import io
import wave

import torch
from torch import Tensor

from diffstudio.imaging import png_urls

WAV_PREFIX = "data:audio/wav;base64,"
PEAK = 10 ** (-1 / 20)  # -1 dBFS: what diffaudio's files are scaled to when louder


def wav_url(samples: Tensor, sample_rate: int) -> str:
    """A mono waveform (L,) -> a 16-bit PCM WAV data URL; a clip louder than -1 dBFS is scaled
    down to it (as ``diffuse sample audio`` writes files), never clipped."""
    x = samples.detach().float().cpu().nan_to_num(0.0)
    peak = float(x.abs().max()) if x.numel() else 0.0
    if peak > PEAK:
        x = x * (PEAK / peak)
    pcm = (x * 32767).round().clamp(-32768, 32767).to(torch.int16).numpy().tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm)
    return WAV_PREFIX + base64.b64encode(buffer.getvalue()).decode("ascii")


def spectrogram_urls(specs: Tensor, *, scale: int = 3) -> list[str]:
    """Normalized spectrograms (N, 1, mels, frames) in [-1, 1] -> PNG data URLs, low
    frequencies at the bottom, each bin ``scale`` pixels wide and high."""
    pictures = specs.detach().float().cpu().flip(-2)
    pictures = pictures.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    return png_urls(pictures)


def fasta(records: list) -> str:
    """Biopython ``SeqRecord``s -> FASTA text (header: id and description)."""
    lines = []
    for record in records:
        lines += [f">{record.id} {record.description}".rstrip(), str(record.seq)]
    return "\n".join(lines) + "\n"


def residue_preview(tokens: Tensor) -> list[str]:
    """Token rows (B, L) of a protein sampler's current estimate -> letters per row: residues as
    their letter, masks as "_", other special tokens (start, end, padding, family) left out."""
    from diffprotein.alphabet import ESM_VOCAB, INPUT_RESIDUE_IDS, MASK_ID

    letters = {i: ESM_VOCAB[i] for i in INPUT_RESIDUE_IDS} | {MASK_ID: "_"}
    return ["".join(letters.get(t, "") for t in row) for row in tokens.tolist()]
