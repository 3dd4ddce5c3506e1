"""A Vocos-style neural vocoder and the spectral distances it is trained and judged with.

Vocos (Siuzdenko et al. 2023, https://arxiv.org/abs/2306.00814): ConvNeXt blocks at the frame
rate predict, for every frame, the log-magnitude and phase of a complex STFT; one inverse STFT
turns that into samples. No layer runs at the sample rate and nothing is upsampled by transposed
convolutions, so it is cheap on a CPU — the reason it is chosen here over HiFi-GAN (all layers
upsampling to the sample rate) and a diffusion vocoder (DiffWave: many network calls).
Trained here with reconstruction losses only (multi-resolution STFT + mel L1), which is what
the benchmark measures; Vocos adds GAN losses for perceptual sharpness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torchaudio
from torch import Tensor, nn

from diffaudio.spectrogram import LogMel, SpectrogramConfig, denormalize


@dataclass(frozen=True)
class VocoderConfig:
    """Width and depth of the vocoder; its STFT is the spectrogram's (n_fft, hop)."""

    spectrogram: SpectrogramConfig = SpectrogramConfig()  # the mels it turns into sound
    dim: int = 192  # channels of the ConvNeXt trunk
    intermediate: int = 576  # hidden width of each block's pointwise MLP (3 x dim)
    layers: int = 6  # ConvNeXt blocks
    kernel: int = 7  # depthwise convolution width, in frames
    max_log_magnitude: float = 4.6  # exp clamp of predicted magnitudes (~100), avoids overflow
    mel_prior: bool = True  # predict log-magnitudes as a correction of the inverse-mel estimate

    def __post_init__(self) -> None:
        if isinstance(self.spectrogram, dict):
            object.__setattr__(self, "spectrogram", SpectrogramConfig(**self.spectrogram))
        for name in ("dim", "intermediate", "layers", "kernel"):
            if getattr(self, name) < 1:
                raise ValueError(f"VocoderConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.kernel % 2 == 0:
            raise ValueError(f"VocoderConfig.kernel must be odd, got {self.kernel}")


class _ConvNeXtBlock(nn.Module):
    """(B, C, T) -> (B, C, T): depthwise conv, LayerNorm, pointwise MLP, layer scale, residual."""

    def __init__(self, dim: int, intermediate: int, kernel: int, layer_scale: float) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, intermediate), nn.GELU(), nn.Linear(intermediate, dim)
        )
        self.scale = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: Tensor) -> Tensor:
        h = self.depthwise(x).transpose(1, 2)  # (B, T, C)
        h = self.mlp(self.norm(h)) * self.scale
        return x + h.transpose(1, 2)


class Vocoder(nn.Module):
    """Normalized log-mel (B, n_mels, frames) in [-1, 1] -> waveform (B, hop * (frames - 1))."""

    config_class = VocoderConfig

    def __init__(self, config: VocoderConfig) -> None:
        super().__init__()
        self.config = c = config
        s = c.spectrogram
        self.embed = nn.Conv1d(s.n_mels, c.dim, c.kernel, padding=c.kernel // 2)
        self.norm_in = nn.LayerNorm(c.dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            _ConvNeXtBlock(c.dim, c.intermediate, c.kernel, 1.0 / c.layers) for _ in range(c.layers)
        )
        self.norm_out = nn.LayerNorm(c.dim, eps=1e-6)
        self.head = nn.Linear(c.dim, s.n_fft + 2)  # log-magnitude and phase of n_fft/2+1 bins
        bins = s.n_fft // 2 + 1
        with torch.no_grad():
            if c.mel_prior:  # start from the prior itself
                self.head.weight[:bins] = 0.0
                self.head.bias[:bins] = 0.0
            else:  # start quiet: magnitudes near exp(-5) rather than exp(0) noise
                self.head.bias[:bins] = -5.0
        # Least-squares inverse of the mel filterbank (derived from the config, not saved):
        # power mel (.., n_mels) @ inverse -> power spectrum estimate (.., bins).
        bank = torchaudio.functional.melscale_fbanks(
            bins,
            s.f_min,
            s.f_max or s.sample_rate / 2,
            s.n_mels,
            s.sample_rate,
            "slaney",
            "slaney",
        )
        self.register_buffer("inverse_mel", torch.linalg.pinv(bank), persistent=False)
        self.register_buffer("window", torch.hann_window(s.n_fft), persistent=False)

    def forward(self, mel: Tensor) -> Tensor:
        s = self.config.spectrogram
        if mel.ndim != 3 or mel.shape[1] != s.n_mels:
            raise ValueError(f"Vocoder expects (B, {s.n_mels}, frames), got {tuple(mel.shape)}")
        h = self.embed(mel)
        h = self.norm_in(h.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            h = block(h)
        out = self.head(self.norm_out(h.transpose(1, 2))).transpose(1, 2)  # (B, n_fft+2, T)
        log_mag, phase = out.float().chunk(2, dim=1)
        if self.config.mel_prior:
            power = denormalize(mel.float(), s).transpose(1, 2) @ self.inverse_mel  # (B, T, bins)
            log_mag = log_mag + 0.5 * power.clamp_min(1e-10).log().transpose(1, 2)
        magnitude = log_mag.clamp(max=self.config.max_log_magnitude).exp()
        # The phase enters only through cos and sin, so it needs no wrapping (Vocos).
        spec = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        return torch.istft(
            spec,
            s.n_fft,
            s.hop_length,
            s.n_fft,
            self.window,
            center=True,
            length=s.hop_length * (mel.shape[-1] - 1),
        )


# Distances between waveforms (also the vocoder's training loss)


def default_resolutions(config: SpectrogramConfig) -> tuple[tuple[int, int], ...]:
    """(n_fft, hop) pairs at half, one and two times the spectrogram's FFT size, hop = n_fft/4."""
    sizes = (config.n_fft // 2, config.n_fft, config.n_fft * 2)
    return tuple((n, n // 4) for n in sizes)


def _magnitude(wave: Tensor, n_fft: int, hop: int) -> Tensor:
    window = torch.hann_window(n_fft, device=wave.device)
    spec = torch.stft(wave.float(), n_fft, hop, n_fft, window, center=True, return_complex=True)
    return spec.abs().clamp_min(1e-5)  # floor: exact digital silence would dominate the log term


def multi_resolution_stft_distance(
    pred: Tensor, target: Tensor, resolutions: Sequence[tuple[int, int]], *, reduce: bool = True
) -> Tensor:
    """Mean over resolutions of spectral convergence + L1 of log magnitudes (Yamamoto et al.
    2020, Parallel WaveGAN, https://arxiv.org/abs/1910.11480). pred, target: (B, L).
    Returns a scalar, or (B,) per clip when ``reduce`` is False."""
    if pred.shape != target.shape:
        raise ValueError(f"waveforms differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    total = pred.new_zeros(pred.shape[0], dtype=torch.float32)
    for n_fft, hop in resolutions:
        p, t = _magnitude(pred, n_fft, hop), _magnitude(target, n_fft, hop)
        convergence = (t - p).flatten(1).norm(dim=1) / t.flatten(1).norm(dim=1)
        log_l1 = (t.log() - p.log()).abs().flatten(1).mean(dim=1)
        total = total + convergence + log_l1
    total = total / len(resolutions)
    return total.mean() if reduce else total


def mel_l1_db(pred: Tensor, target: Tensor, logmel: LogMel, *, reduce: bool = True) -> Tensor:
    """Mean absolute difference of the two waveforms' log-mel spectrograms, in dB, both floored
    at the spectrogram's ``db_min`` (quieter differences are inaudible). pred, target: (B, L)."""
    if pred.shape != target.shape:
        raise ValueError(f"waveforms differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    floor = logmel.config.db_min
    db = lambda w: (10 * torch.log10(logmel.power(w).clamp_min(1e-10))).clamp_min(floor)
    err = (db(pred) - db(target)).abs().flatten(1).mean(dim=1)
    return err.mean() if reduce else err


def vocoder_loss(vocoder: nn.Module, wave: Tensor, logmel: LogMel) -> Tensor:
    """Training loss for a batch of real clips (B, L): re-synthesise them from their own
    spectrograms and compare (MR-STFT + mel L1 / 5 dB)."""
    with torch.no_grad():
        mel = logmel(wave)
    pred = vocoder(mel)
    resolutions = default_resolutions(logmel.config)
    return (
        multi_resolution_stft_distance(pred, wave, resolutions)
        + mel_l1_db(pred, wave, logmel) / 5.0
    )
