"""Waveform <-> normalized log-mel spectrogram, Griffin-Lim, and spectrogram pictures.

The spectrogram is what the diffusion model sees: a (n_mels, frames) image in [-1, 1], low
frequencies in row 0. It is made in three exactly invertible steps after the (lossy) mel
transform of ``torchaudio``:

    power mel  ->  dB = 10 log10(max(mel, 1e-10))  ->  x = 2 (dB - db_min) / (db_max - db_min) - 1

clipped to [-1, 1]; :func:`denormalize` undoes the last two exactly for values inside the range
(everything quieter than ``db_min`` comes back as ``db_min``).

Lengths: a clip of ``hop_length * (frames - 1)`` samples gives exactly ``frames`` frames
(centred STFT), and an inverse STFT of ``frames`` frames gives that many samples back, so
spectrogram width and clip length are one setting (``frames``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torchaudio
from PIL import Image, PngImagePlugin
from torch import Tensor, nn

# Defaults per sample rate: (n_fft, hop_length, n_mels). n_fft spans ~64 ms (speech formants
# resolved, pitch harmonics mostly smeared), hop = n_fft / 4; mel counts follow common practice
# (HiFi-GAN: 80 at 22.05 kHz; Vocos: 100 at 24 kHz) and shrink at low rates, where the band is
# narrow. Rates not listed take the row of the nearest listed rate.
SAMPLE_RATE_DEFAULTS: dict[int, tuple[int, int, int]] = {
    8_000: (512, 128, 32),
    16_000: (1024, 256, 64),
    22_050: (1024, 256, 80),
    24_000: (1024, 256, 100),
    44_100: (2048, 512, 128),
    48_000: (2048, 512, 128),
}


@dataclass(frozen=True)
class SpectrogramConfig:
    """Mel transform, dB range and clip length. Defaults: 8 kHz speech (FSDD), 0.75 s clips."""

    sample_rate: int = 8_000  # Hz; every loader resamples to it
    n_fft: int = 512  # FFT size (64 ms at 8 kHz)
    hop_length: int = 128  # samples between frames (16 ms at 8 kHz)
    n_mels: int = 32  # mel bands = spectrogram height
    frames: int = 48  # spectrogram width; clips hold hop_length * (frames - 1) samples
    f_min: float = 0.0  # lowest mel-band edge, Hz
    f_max: float | None = None  # highest mel-band edge, Hz; None = sample_rate / 2
    db_min: float = -80.0  # maps to -1 (and everything quieter; for audio in [-1, 1])
    db_max: float = 20.0  # maps to +1 (a full-scale tone is about +15 dB)

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SpectrogramConfig.{name} must be a positive int, got {value!r}")
        for name in ("f_min", "f_max", "db_min", "db_max"):
            value = getattr(self, name)
            real = isinstance(value, int | float) and not isinstance(value, bool)
            if not (real and math.isfinite(value)) and not (name == "f_max" and value is None):
                raise ValueError(f"SpectrogramConfig.{name} must be a finite number, got {value!r}")
        if self.frames < 2:
            raise ValueError(f"SpectrogramConfig.frames must be >= 2, got {self.frames}")
        if self.hop_length > self.n_fft:
            raise ValueError(
                f"SpectrogramConfig.hop_length ({self.hop_length}) must not exceed n_fft "
                f"({self.n_fft}): frames would leave gaps the inverse STFT cannot fill"
            )
        top = self.f_max if self.f_max is not None else self.sample_rate / 2
        if not 0 <= self.f_min < top <= self.sample_rate / 2:
            raise ValueError(
                f"SpectrogramConfig needs 0 <= f_min < f_max <= sample_rate / 2, got f_min="
                f"{self.f_min}, f_max={top}, sample_rate={self.sample_rate}"
            )
        if not self.db_min < self.db_max:
            raise ValueError(
                f"SpectrogramConfig.db_min ({self.db_min}) must be below db_max ({self.db_max})"
            )

    @property
    def num_samples(self) -> int:
        """Samples per clip: ``hop_length * (frames - 1)``."""
        return self.hop_length * (self.frames - 1)

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sample_rate

    def frames_for(self, seconds: float) -> int:
        """Frame index at time ``seconds`` (rounded)."""
        return round(seconds * self.sample_rate / self.hop_length)

    def to_dict(self) -> dict:
        return asdict(self)


def spectrogram_config(sample_rate: int, seconds: float = 0.75, **overrides) -> SpectrogramConfig:
    """Defaults for ``sample_rate`` (see ``SAMPLE_RATE_DEFAULTS``) with clips of about
    ``seconds``, frames rounded up to a multiple of 4 (the U-Net's downsampling factor)."""
    if not isinstance(sample_rate, int) or sample_rate < 1000:
        raise ValueError(f"sample_rate must be an int >= 1000 Hz, got {sample_rate!r}")
    nearest = min(SAMPLE_RATE_DEFAULTS, key=lambda r: abs(math.log(r / sample_rate)))
    n_fft, hop, n_mels = SAMPLE_RATE_DEFAULTS[nearest]
    if nearest != sample_rate:  # keep the window and hop durations of the nearest row
        n_fft = 2 ** round(math.log2(n_fft * sample_rate / nearest))
        hop = n_fft // 4
    frames = 4 * math.ceil((seconds * sample_rate / hop + 1) / 4)
    base = SpectrogramConfig(sample_rate, n_fft, hop, n_mels, frames)
    return replace(base, **overrides)


def normalize(mel: Tensor, config: SpectrogramConfig) -> Tensor:
    """Power mel (..., n_mels, frames) >= 0 -> log-compressed, scaled to [-1, 1]."""
    db = 10.0 * torch.log10(mel.clamp_min(1e-10))
    x = 2.0 * (db - config.db_min) / (config.db_max - config.db_min) - 1.0
    return x.clamp(-1.0, 1.0)


def denormalize(x: Tensor, config: SpectrogramConfig) -> Tensor:
    """Exact inverse of :func:`normalize` on [-1, 1]: -> power mel (values outside are clipped)."""
    db = (x.clamp(-1.0, 1.0) + 1.0) / 2.0 * (config.db_max - config.db_min) + config.db_min
    return torch.pow(10.0, db / 10.0)


class LogMel(nn.Module):
    """Waveform (..., L) -> normalized log-mel (..., n_mels, 1 + L // hop_length) in [-1, 1].

    Slaney mel scale and area normalisation (librosa's defaults), Hann window, centred frames.
    """

    def __init__(self, config: SpectrogramConfig) -> None:
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            f_min=config.f_min,
            f_max=config.f_max,
            n_mels=config.n_mels,
            power=2.0,
            norm="slaney",
            mel_scale="slaney",
            center=True,
            pad_mode="reflect",
        )

    def power(self, wave: Tensor) -> Tensor:
        """Power mel spectrogram (..., n_mels, frames), float32."""
        return self.mel(wave.float())

    def forward(self, wave: Tensor) -> Tensor:
        return normalize(self.power(wave), self.config)


def griffin_lim(x: Tensor, config: SpectrogramConfig, *, n_iter: int = 32, seed: int = 0) -> Tensor:
    """The training-free vocoder: normalized log-mel (B, n_mels, frames) -> waveform
    (B, hop * (frames - 1)). Least-squares inverse mel filterbank (non-negative), then
    Griffin & Lim (1984) phase recovery with momentum 0.99 (Perraudin et al. 2013), as in
    Riffusion and diffusers' audio pipeline. Random initial phases come from ``seed``."""
    if x.ndim != 3 or x.shape[1] != config.n_mels:
        raise ValueError(
            f"griffin_lim expects (B, {config.n_mels}, frames) spectrograms, got {tuple(x.shape)}"
        )
    inverse_mel = torchaudio.transforms.InverseMelScale(
        n_stft=config.n_fft // 2 + 1,
        n_mels=config.n_mels,
        sample_rate=config.sample_rate,
        f_min=config.f_min,
        f_max=config.f_max,
        norm="slaney",
        mel_scale="slaney",
        driver="gelsd",  # rank-revealing least squares: robust for all-zero filter rows
    ).to(x.device)
    linear = inverse_mel(denormalize(x.float(), config)).clamp_min(0.0)
    window = torch.hann_window(config.n_fft, device=x.device)
    length = config.hop_length * (x.shape[-1] - 1)
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        return torchaudio.functional.griffinlim(
            linear,
            window,
            config.n_fft,
            config.hop_length,
            config.n_fft,
            2.0,
            n_iter,
            0.99,
            length,
            True,
        )


# Pictures for people: greyscale PNGs, low frequencies at the bottom, the config in a text chunk
# (like Riffusion's EXIF tags) so a PNG can be turned back into sound.

_PNG_KEY = "diffaudio.spectrogram"


def save_spectrogram_png(
    x: Tensor, path: str | Path, config: SpectrogramConfig, *, scale: int = 4
) -> Path:
    """Write one normalized spectrogram (n_mels, frames) or (1, n_mels, frames) as a PNG,
    each bin ``scale`` x ``scale`` pixels, loud = bright."""
    x = x.detach().float().cpu()
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"expected a (n_mels, frames) spectrogram, got shape {tuple(x.shape)}")
    pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).flip(0)
    pixels = pixels.repeat_interleave(scale, 0).repeat_interleave(scale, 1).numpy()
    info = PngImagePlugin.PngInfo()
    info.add_text(_PNG_KEY, json.dumps({"scale": scale, **config.to_dict()}))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="L").save(path, pnginfo=info)
    return path


def load_spectrogram_png(path: str | Path) -> tuple[Tensor, SpectrogramConfig]:
    """Read a PNG written by :func:`save_spectrogram_png`: (n_mels, frames) in [-1, 1]
    (8-bit, so within 1/255 of what was saved) and its config."""
    path = Path(path)
    try:
        image = Image.open(path)
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"{path}: not a readable PNG ({err})") from err
    meta = image.info.get(_PNG_KEY)
    if meta is None:
        raise ValueError(
            f"{path}: no {_PNG_KEY} text chunk; only spectrogram PNGs written by diffaudio "
            "carry the settings needed to turn them back into sound"
        )
    try:
        fields = json.loads(meta)
        if not isinstance(fields, dict):
            raise TypeError(f"expected a JSON object, got {type(fields).__name__}")
        scale = fields.pop("scale", None)
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
            raise ValueError(f"'scale' must be a positive int, got {scale!r}")
        config = SpectrogramConfig(**fields)
    except (ValueError, TypeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: damaged {_PNG_KEY} settings ({err})") from err
    grey = image.convert("L")
    pixels = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8)
    pixels = pixels.reshape(grey.height, grey.width)[::scale, ::scale]
    if tuple(pixels.shape) != (config.n_mels, config.frames):
        raise ValueError(
            f"{path}: picture holds {pixels.shape} bins, its settings say "
            f"({config.n_mels}, {config.frames})"
        )
    x = pixels.flip(0).float() / 127.5 - 1.0
    return x, config


def load_spectrogram(path: str | Path, config: SpectrogramConfig) -> Tensor:
    """A normalized spectrogram (n_mels, frames) of ``config`` from a recording (resampled,
    padded or cropped to the clip length) or from a PNG written by
    :func:`save_spectrogram_png` with the same settings."""
    from diffaudio.data import fit_length, read_audio

    path = Path(path)
    if path.suffix.lower() == ".png":
        x, made_with = load_spectrogram_png(path)
        if made_with != config:
            raise ValueError(f"{path}: made with {made_with}, the model uses {config}")
        return x
    wave = read_audio(path, config.sample_rate)
    return LogMel(config)(fit_length(wave, config.num_samples, hop=config.hop_length))
