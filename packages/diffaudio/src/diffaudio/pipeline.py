"""The public API: train the spectrogram model and the vocoder, sample, and edit recordings.

clips = load_audio("fsdd/recordings", sample_rate=8000, num_samples=spec.num_samples,
                   pattern="{label}_{speaker}_{index}")
train_audio_diffusion(clips, "runs/audio", TrainConfig(steps=4000, batch_size=32), spectrogram=spec)
train_vocoder(clips, "runs/vocoder", TrainConfig(steps=3000, batch_size=16), spectrogram=spec)
pipe = AudioPipeline.from_pretrained("runs/audio/final", "runs/vocoder/final")
spec = pipe.sample(labels=torch.arange(10), guidance=3.0, generator=g)   # (10, 1, M, T)
waves = pipe.to_waveform(spec)                                          # (10, L)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from diffaudio._progress import Progress
from diffaudio.conditioning import drop_to_null
from diffaudio.data import AudioClips
from diffaudio.model import AudioUNet, audio_unet_config
from diffaudio.spectrogram import LogMel, SpectrogramConfig, griffin_lim
from diffaudio.vocoder import Vocoder, VocoderConfig, vocoder_loss
from diffcore.denoisers import Clamped, condition, guidance
from diffcore.io import from_pretrained
from diffcore.samplers import SAMPLERS
from diffcore.schedules import karras_grid
from diffcore.training import TrainConfig, TrainResult, train


def _check_rate(clips: AudioClips, spectrogram: SpectrogramConfig) -> None:
    if clips.sample_rate != spectrogram.sample_rate:
        raise ValueError(
            f"clips are at {clips.sample_rate} Hz, the spectrogram settings at "
            f"{spectrogram.sample_rate} Hz; load them at the settings' rate"
        )
    if clips.waves.shape[1] != spectrogram.num_samples:
        raise ValueError(
            f"clips hold {clips.waves.shape[1]} samples, the spectrogram settings expect "
            f"{spectrogram.num_samples} (hop_length * (frames - 1))"
        )


@torch.no_grad()
def clip_spectrograms(clips: AudioClips, spectrogram: SpectrogramConfig) -> Tensor:
    """Normalized log-mels (N, 1, n_mels, frames) of all clips."""
    _check_rate(clips, spectrogram)
    logmel = LogMel(spectrogram)
    return torch.cat([logmel(w) for w in clips.waves.split(256)])[:, None]


def train_audio_diffusion(
    clips: AudioClips,
    out_dir: str | Path,
    train_config: TrainConfig,
    *,
    spectrogram: SpectrogramConfig,
    preset: str = "small",
    label_dropout: float = 0.1,
    speaker_dropout: float = 0.1,
    progress: bool = True,
    device: str | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train a spectrogram U-Net on ``clips`` (their labels and speakers, when present, become
    its conditions, each dropped to null with the given probability for guidance). The model
    lands in ``out_dir/final``; ``overrides`` go to :func:`diffaudio.model.audio_unet_config`."""
    x = clip_spectrograms(clips, spectrogram)
    config = audio_unet_config(
        preset, spectrogram, label_names=clips.label_names, speaker_names=clips.speaker_names,
        **overrides,
    )  # fmt: skip
    model = AudioUNet(config)
    process = model.process
    rows: list[dict[str, Tensor]] = []
    for i in range(len(clips)):
        row = {"x": x[i]}
        if clips.labels is not None:
            row["labels"] = clips.labels[i]
        if clips.speakers is not None:
            row["speakers"] = clips.speakers[i]
        rows.append(row)

    def loss_fn(net: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        cond = {}
        if "labels" in batch:
            cond["labels"] = drop_to_null(
                batch["labels"], config.null_label, label_dropout, generator
            )
        if "speakers" in batch:
            cond["speakers"] = drop_to_null(
                batch["speakers"], config.null_speaker, speaker_dropout, generator
            )
        return process.loss(net, batch["x"], generator, **cond)

    return train(
        model, loss_fn, rows, train_config, out_dir=out_dir, progress=progress, device=device
    )


def train_vocoder(
    clips: AudioClips,
    out_dir: str | Path,
    train_config: TrainConfig,
    *,
    config: VocoderConfig,
    progress: bool = True,
    device: str | None = None,
) -> TrainResult:
    """Train a :class:`~diffaudio.vocoder.Vocoder` to re-synthesise ``clips`` from their own
    spectrograms; the model lands in ``out_dir/final``."""
    _check_rate(clips, config.spectrogram)
    logmel = LogMel(config.spectrogram)

    def loss_fn(net: nn.Module, wave: Tensor, generator: torch.Generator) -> Tensor:
        return vocoder_loss(net, wave, logmel.to(wave.device))

    return train(
        Vocoder(config),
        loss_fn,
        clips.waves,
        train_config,
        out_dir=out_dir,
        progress=progress,
        device=device,
    )


@dataclass
class AudioPipeline:
    """A trained spectrogram model and the vocoder that voices it (None = Griffin-Lim)."""

    model: AudioUNet
    vocoder: Vocoder | None = None
    griffin_lim_iters: int = 32  # used when there is no neural vocoder

    def __post_init__(self) -> None:
        if self.vocoder is not None and self.vocoder.config.spectrogram != self.spectrogram:
            raise ValueError(
                "the vocoder was trained on different spectrogram settings than the model: "
                f"{self.vocoder.config.spectrogram} vs {self.spectrogram}"
            )
        self.model.eval()
        if self.vocoder is not None:
            self.vocoder.eval()

    @classmethod
    def from_pretrained(
        cls, model_dir: str | Path, vocoder_dir: str | Path | None = None, *, device: str = "cpu"
    ) -> AudioPipeline:
        model = from_pretrained(AudioUNet, model_dir, device=device)
        vocoder = from_pretrained(Vocoder, vocoder_dir, device=device) if vocoder_dir else None
        return cls(model, vocoder)

    @property
    def spectrogram(self) -> SpectrogramConfig:
        return self.model.config.spectrogram

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _ids(self, ids: Tensor | None, batch: int, null: int, what: str) -> Tensor | None:
        if null == 0:  # the model has no such condition
            if ids is not None:
                raise ValueError(f"{what} given, but the model was trained without {what}")
            return None
        if ids is None:
            return torch.full((batch,), null, dtype=torch.long, device=self.device)
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        if ids.shape != (batch,):
            raise ValueError(f"{what} must have shape ({batch},), got {tuple(ids.shape)}")
        return ids

    def sample(
        self,
        n: int | None = None,
        *,
        labels: Tensor | None = None,
        speakers: Tensor | None = None,
        steps: int = 25,
        guidance_scale: float = 3.0,
        sampler: str = "dpmpp_2m",
        generator: torch.Generator | None = None,
        known: Tensor | None = None,
        mask: Tensor | None = None,
        progress: bool = False,
    ) -> Tensor:
        """Spectrograms (B, 1, n_mels, frames) in [-1, 1]. B = ``n`` or the length of
        ``labels`` / ``speakers`` (ids; the null id = "any"). ``known`` + ``mask`` (both
        shaped like the output, mask True = keep) make it inpainting. Guidance mixes the
        conditional model with the fully unconditional one (scale 1 = no guidance)."""
        c = self.model.config
        batch = n or next((len(t) for t in (labels, speakers, known) if t is not None), None)
        if batch is None:
            raise ValueError("give n, labels, speakers or known to say how many samples")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; expected one of {sorted(SAMPLERS)}")
        cond, uncond = {}, {}
        for key, ids, null in (
            ("labels", labels, c.null_label),
            ("speakers", speakers, c.null_speaker),
        ):
            ids = self._ids(ids, batch, null, key)
            if ids is not None:
                cond[key], uncond[key] = ids, torch.full_like(ids, null)
        process = self.model.process
        base = process.denoiser(self.model)
        denoiser = guidance(base, guidance_scale, cond, uncond) if cond else condition(base)
        denoiser = Clamped(denoiser, -1.0, 1.0)
        grid = karras_grid(steps, 0.01, process.sigma_max)
        shape = (batch, 1, self.spectrogram.n_mels, self.spectrogram.frames)
        noise = torch.randn(shape, generator=generator, device=self.device)
        bar = Progress(steps, "sampling steps", enabled=progress)
        options: dict[str, Any] = {"generator": generator, "callback": lambda *a: bar.update(1)}
        if known is not None or mask is not None:
            options.update(known=known, mask=mask)
        with torch.no_grad():
            out = SAMPLERS[sampler](denoiser, noise, grid, **options)
        bar.close()
        return out.clamp(-1.0, 1.0)

    def inpaint(self, spectrograms: Tensor, keep: Tensor, **options: Any) -> Tensor:
        """Regenerate the frames of ``spectrograms`` (B, 1, M, T) where ``keep`` (T,) or (B, T)
        is False, consistent with the kept ones: fill a gap, or continue a recording."""
        spectrograms = spectrograms.to(self.device)
        expected = (1, self.spectrogram.n_mels, self.spectrogram.frames)
        if spectrograms.ndim != 4 or tuple(spectrograms.shape[1:]) != expected:
            raise ValueError(
                f"expected spectrograms of shape (B, {', '.join(map(str, expected))}), got "
                f"{tuple(spectrograms.shape)}"
            )
        keep = torch.as_tensor(keep, dtype=torch.bool, device=self.device)
        if keep.shape[-1] != self.spectrogram.frames or keep.ndim not in (1, 2):
            raise ValueError(f"keep must be (T,) or (B, T) with T = {self.spectrogram.frames}")
        mask = keep.reshape(-1, 1, 1, keep.shape[-1]).expand_as(spectrograms)
        return self.sample(known=spectrograms, mask=mask, **options)

    @torch.no_grad()
    def to_waveform(self, spectrograms: Tensor) -> Tensor:
        """(B, 1, M, T) or (B, M, T) spectrograms -> waveforms (B, hop * (T - 1))."""
        x = spectrograms[:, 0] if spectrograms.ndim == 4 else spectrograms
        if self.vocoder is None:
            return griffin_lim(x.cpu(), self.spectrogram, n_iter=self.griffin_lim_iters)
        return self.vocoder(x.to(self.device)).cpu()


def keep_mask(
    config: SpectrogramConfig,
    *,
    gap: tuple[float, float] | None = None,
    keep_until: float | None = None,
) -> Tensor:
    """Frames (T,) to keep when editing: everything but the ``gap`` (start, end) in seconds
    ("fill a gap"), or everything before ``keep_until`` seconds ("continue a recording")."""
    if (gap is None) == (keep_until is None):
        raise ValueError("give exactly one of gap=(start, end) or keep_until=seconds")
    frames = torch.arange(config.frames)
    if gap is not None:
        start, end = config.frames_for(gap[0]), config.frames_for(gap[1])
        if not 0 <= start < end <= config.frames:
            raise ValueError(
                f"gap {gap} s must satisfy 0 <= start < end <= {config.seconds:.3f} s "
                f"(the clip length)"
            )
        return (frames < start) | (frames >= end)
    until = config.frames_for(keep_until)
    if not 0 < until < config.frames:
        raise ValueError(f"keep_until must lie inside the clip (0, {config.seconds:.3f}) s")
    return frames < until
