"""The judge: a small CNN classifier trained on real recordings, used to score generated audio
(DiffWave's SC09 protocol, Kong et al. 2021, https://arxiv.org/abs/2009.09761): the share of
conditional samples it hears as the intended class, and the Fréchet distance between its
penultimate features of samples and of real test audio.

It listens to waveforms, through its own log-mel front end, so it judges the whole chain
(diffusion model + vocoder), not the spectrogram alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffaudio.data import AudioClips
from diffaudio.spectrogram import LogMel, SpectrogramConfig
from diffcore.training import TrainConfig, TrainResult, train


@dataclass(frozen=True)
class JudgeConfig:
    """Shape of the judge."""

    spectrogram: SpectrogramConfig = SpectrogramConfig()  # its front end
    label_names: tuple[str, ...] = ()  # the classes it tells apart
    channels: tuple[int, ...] = (32, 64, 128)  # conv widths; frequency and time halve between
    dropout: float = 0.3  # before the last layer
    max_shift: int = 6  # training augmentation: random shift of up to this many frames
    max_gain_db: float = 6.0  # training augmentation: random gain of up to this many dB

    def __post_init__(self) -> None:
        if isinstance(self.spectrogram, dict):
            object.__setattr__(self, "spectrogram", SpectrogramConfig(**self.spectrogram))
        object.__setattr__(self, "label_names", tuple(str(n) for n in self.label_names))
        object.__setattr__(self, "channels", tuple(self.channels))
        if len(self.label_names) < 2:
            raise ValueError(f"a judge needs at least 2 classes, got {list(self.label_names)}")


class Judge(nn.Module):
    """waveform (B, L) -> logits (B, classes); ``features(wave)`` -> (B, channels[-1])."""

    config_class = JudgeConfig

    def __init__(self, config: JudgeConfig) -> None:
        super().__init__()
        self.config = c = config
        self.logmel = LogMel(c.spectrogram)
        layers: list[nn.Module] = []
        width = 1
        for i, out in enumerate(c.channels):
            layers += [
                nn.Conv2d(width, out, 3, padding=1),
                nn.BatchNorm2d(out),
                nn.ReLU(),
                nn.Conv2d(out, out, 3, padding=1),
                nn.BatchNorm2d(out),
                nn.ReLU(),
            ]
            if i < len(c.channels) - 1:
                layers.append(nn.MaxPool2d(2))
            width = out
        self.trunk = nn.Sequential(*layers)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(width, len(c.label_names))

    def spectrogram_features(self, mel: Tensor) -> Tensor:
        """Normalized log-mel (B, n_mels, frames) -> pooled features (B, channels[-1])."""
        return self.trunk(mel[:, None]).mean(dim=(2, 3))

    def features(self, wave: Tensor) -> Tensor:
        return self.spectrogram_features(self.logmel(wave))

    def forward(self, wave: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(wave)))

    def augment(self, mel: Tensor, generator: torch.Generator) -> Tensor:
        """Random gain and time shift (silence fills in): robustness to loudness and timing."""
        c, batch = self.config, mel.shape[0]
        gain_db = (
            torch.rand(batch, generator=generator, device=mel.device) * 2 - 1
        ) * c.max_gain_db
        span = c.spectrogram.db_max - c.spectrogram.db_min
        mel = (mel + (2 * gain_db / span)[:, None, None]).clamp(-1, 1)
        shifts = torch.randint(
            -c.max_shift, c.max_shift + 1, (batch,), generator=generator, device=mel.device
        )
        frames = torch.arange(mel.shape[-1], device=mel.device)
        source = frames[None, :] - shifts[:, None]  # (B, T) frame read at each position
        valid = (source >= 0) & (source < mel.shape[-1])
        gathered = mel.gather(2, source.clamp(0, mel.shape[-1] - 1)[:, None].expand_as(mel))
        return torch.where(valid[:, None], gathered, torch.full_like(mel, -1.0))


def _judge_loss(
    model: nn.Module, batch: tuple[Tensor, Tensor], generator: torch.Generator
) -> Tensor:
    wave, labels = batch
    judge = model.module if hasattr(model, "module") else model  # DDP wraps it
    with torch.no_grad():
        mel = judge.augment(judge.logmel(wave), generator)
    logits = judge.head(judge.dropout(judge.spectrogram_features(mel)))
    return F.cross_entropy(logits, labels)


def train_judge(
    clips: AudioClips,
    out_dir: str | Path,
    train_config: TrainConfig,
    *,
    spectrogram: SpectrogramConfig,
    channels: tuple[int, ...] = JudgeConfig.channels,
    progress: bool = True,
    device: str | None = None,
) -> TrainResult:
    """Train a judge on labelled clips; the model lands in ``out_dir/final``."""
    if clips.labels is None:
        raise ValueError("the judge needs labelled clips (clips.labels is None)")
    if clips.sample_rate != spectrogram.sample_rate:
        raise ValueError(
            f"clips are at {clips.sample_rate} Hz, the spectrogram settings at "
            f"{spectrogram.sample_rate} Hz"
        )
    judge = Judge(JudgeConfig(spectrogram, clips.label_names, channels))
    dataset = list(zip(clips.waves, clips.labels, strict=True))
    return train(
        judge, _judge_loss, dataset, train_config, out_dir=out_dir, progress=progress, device=device
    )


@torch.no_grad()
def judge_outputs(judge: Judge, waves: Tensor, *, batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """(predicted class (N,), features (N, D)) of waveforms (N, L), in eval mode."""
    judge.eval()
    preds, feats = [], []
    device = next(judge.parameters()).device
    for chunk in waves.split(batch_size):
        f = judge.features(chunk.to(device))
        feats.append(f.cpu())
        preds.append(judge.head(f).argmax(1).cpu())
    return torch.cat(preds), torch.cat(feats)
