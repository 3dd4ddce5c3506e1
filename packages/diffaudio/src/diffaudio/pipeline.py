"""The public API: train the spectrogram model and the vocoder, sample, and edit recordings.

clips = load_audio("fsdd/recordings", sample_rate=8000, num_samples=spec.num_samples,
                   pattern="{label}_{speaker}_{index}")
train_audio_diffusion(clips, "runs/audio", TrainConfig(steps=4000, batch_size=32), spectrogram=spec)
train_vocoder(clips, "runs/vocoder", TrainConfig(steps=3000, batch_size=16), spectrogram=spec)
pipe = AudioPipeline.from_pretrained("runs/audio/final", vocoder="runs/vocoder/final")
spec = pipe.sample(10, labels=torch.arange(10), guidance=3.0, seed=0)   # (10, 1, M, T)
waves = pipe.to_waveform(spec)                                         # (10, L)
gap = ~keep_mask(pipe.spectrogram, gap=(0.2, 0.4))                     # frames to regenerate
filled = pipe.inpaint(spec, gap.reshape(1, 1, 1, -1), labels=torch.arange(10))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffaudio.data import AudioClips
from diffaudio.model import CRAPPIFIERS, AudioUNet, audio_unet_config
from diffaudio.outputs import save_outputs
from diffaudio.spectrogram import LogMel, SpectrogramConfig, griffin_lim
from diffaudio.vocoder import Vocoder, VocoderConfig, vocoder_loss
from diffcore.generation import ContinuousPipeline
from diffcore.generation.cascade import low_res_input, stage_conditions
from diffcore.io import WEIGHTS_NAME, from_pretrained, load_weights, read_sampling, save_pretrained
from diffcore.processes import PROCESSES, parse_crappifier, process_fields, start_stats
from diffcore.seeding import seeded
from diffcore.training import (
    TrainConfig,
    TrainResult,
    distill,
    drop_condition,
    resolve_device,
    train,
)


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
    process: str = "diffusion",
    init: str | Path | None = None,
    seed: int | None = None,
    settings: dict[str, Any] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train a spectrogram U-Net on ``clips`` (their labels and speakers, when present, become
    its conditions, each dropped to null with the given probability for guidance) with
    ``process``: "diffusion", "flow" (flow matching; ``diffcore.processes.PROCESSES``) or a
    crappifier spec of ``diffaudio.model.CRAPPIFIERS`` such as "lowpass+noise:0.3" (a restorer);
    ``init``: a model folder of the same shape to start from; ``seed``: the initial weights';
    ``settings``: fields of ``AudioUNetConfig`` (weighting, prediction...) over the process's.
    The model lands in ``out_dir/final``; ``overrides`` go to
    :func:`diffaudio.model.audio_unet_config`."""
    _check_rate(clips, spectrogram)
    if process in PROCESSES:
        fields: dict[str, Any] = process_fields(process)
    else:
        parse_crappifier(process, allowed=CRAPPIFIERS)  # a bad name fails before the stats
        some = clips.subset(range(min(len(clips), 2000)))
        start = start_stats(clip_spectrograms(some, spectrogram))
        fields = {"degradation": process, "start": start}
    config = audio_unet_config(
        preset,
        spectrogram,
        label_names=clips.label_names,
        speaker_names=clips.speaker_names,
        **(fields | (settings or {}) | overrides),
    )
    with seeded(seed):  # the initial weights
        model = AudioUNet(config)
    if init is not None:  # e.g. an expert for part of the noise levels from a full model
        load_weights(model, Path(init) / WEIGHTS_NAME)
    return _train_unet(
        model,
        clips,
        train_config,
        out_dir,
        model.process,
        label_dropout,
        speaker_dropout,
        progress=progress,
        device=device,
    )


def distill_audio_diffusion(
    teacher: AudioUNet,
    clips: AudioClips,
    out_dir: str | Path,
    train_config: TrainConfig,
    *,
    steps: int = 4,
    teacher_steps: int = 32,
    label_dropout: float = 0.1,
    speaker_dropout: float = 0.1,
    progress: bool = True,
    device: str | None = None,
) -> list[Path]:
    """Progressive distillation (:mod:`diffcore.training.distill`) of a trained spectrogram
    U-Net on the clips it learned from: rounds of ``train_config.steps`` optimiser steps each
    halve the DDIM steps, from ``teacher_steps`` down to ``steps``. Returns one model folder per
    round (``out_dir/steps_<n>/final``); each samples through :class:`AudioPipeline` with DDIM
    at its own step count by default."""
    device = resolve_device(device)

    def train_round(net: Any, objective: Any, folder: Path) -> TrainResult:
        return _train_unet(
            net,
            clips,
            train_config,
            folder,
            objective,
            label_dropout,
            speaker_dropout,
            progress=progress,
            device=device,
        )

    return distill(
        teacher.to(device),
        train_round,
        teacher_steps=teacher_steps,
        steps=steps,
        out_dir=out_dir,
        clamp=AudioPipeline.data_range,
    )


def _train_unet(
    model: AudioUNet,
    clips: AudioClips,
    train_config: TrainConfig,
    out_dir: str | Path,
    objective: Any,
    label_dropout: float,
    speaker_dropout: float,
    *,
    progress: bool,
    device: Any,
) -> TrainResult:
    """Train ``model`` on the clips' spectrograms with ``objective.loss`` (the model's process,
    or a distillation objective), conditions dropped to null for guidance."""
    config = model.config
    x = clip_spectrograms(clips, config.spectrogram)
    if config.size is not None:  # a cascade's base learns the coarse grid
        x = F.interpolate(x, size=config.size, mode="area")
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
            cond["labels"] = drop_condition(
                batch["labels"], label_dropout, config.null_label, generator
            )
        if "speakers" in batch:
            cond["speakers"] = drop_condition(
                batch["speakers"], speaker_dropout, config.null_speaker, generator
            )
        if config.low_res is not None:  # a cascade stage learns from augmented coarse x0
            cond |= low_res_input(batch["x"], config.low_res, config.low_res_noise, generator)
        return objective.loss(net, batch["x"], generator, **cond)

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


VOCODER_DIR = "vocoder"  # a neural vocoder saved inside a model folder


class AudioPipeline(ContinuousPipeline):
    """A trained spectrogram model and the vocoder that voices it (None = Griffin-Lim):
    ``sample(n, labels=, speakers=)``, ``edit(spectrograms, strength)``, ``inpaint(spectrograms,
    mask)`` give spectrograms (B, 1, n_mels, frames) in [-1, 1]; ``to_waveform`` voices them.
    Sampler, steps, guidance, seeds and batching: :class:`diffcore.generation.ContinuousPipeline`.
    """

    model_class = AudioUNet
    sigma_min = 0.01  # the lowest level of Karras grids (below it a spectrogram is unchanged)

    def __init__(
        self,
        model: AudioUNet,
        *,
        vocoder: Vocoder | None = None,
        griffin_lim_iters: int = 32,
        **options: Any,
    ) -> None:
        super().__init__(model, **options)
        if vocoder is not None and vocoder.config.spectrogram != self.spectrogram:
            raise ValueError(
                "the vocoder was trained on different spectrogram settings than the model: "
                f"{vocoder.config.spectrogram} vs {self.spectrogram}"
            )
        self.vocoder = None if vocoder is None else vocoder.to(self.device).eval()
        self.griffin_lim_iters = griffin_lim_iters  # used when there is no neural vocoder

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        vocoder: str | Path | None = None,
        device: str | torch.device = "cpu",
        **options: Any,
    ) -> AudioPipeline:
        """The model folder; the vocoder from ``vocoder`` (a folder), else from the model
        folder's ``vocoder/`` when ``save_pretrained`` put one there, else Griffin-Lim."""
        model = from_pretrained(AudioUNet, directory, device=device)
        inside = Path(directory) / VOCODER_DIR
        if vocoder is None and (inside / "config.json").is_file():
            vocoder = inside
        voice = from_pretrained(Vocoder, vocoder, device=device) if vocoder else None
        options.setdefault("sampling", read_sampling(directory))
        return cls(model, vocoder=voice, device=device, **options)

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = save_pretrained(self.model, directory)
        if self.vocoder is not None:
            save_pretrained(self.vocoder, directory / VOCODER_DIR)
        self.save_sampling(directory)
        return directory

    def save(
        self,
        spectrograms: Tensor,
        folder: str | Path,
        *,
        names: Sequence[str] | None = None,
        records: Sequence[dict[str, Any]] | None = None,
    ) -> Path:
        """Voice spectrograms (B, 1, M, T) and write ``<name>.wav`` + ``<name>.png`` per sample
        and ``samples.jsonl`` (one line each, with ``records[i]``); returns the JSONL path."""
        names = names or [f"{i:04d}" for i in range(len(spectrograms))]
        waves = self.to_waveform(spectrograms)
        return save_outputs(
            folder, waves, spectrograms, self.spectrogram, names=names, records=records
        ).index

    @property
    def spectrogram(self) -> SpectrogramConfig:
        return self.model.config.spectrogram

    def sample_shape(self) -> tuple[int, ...]:
        return (1, *self.model.config.shape)

    def conditions(
        self,
        n: int,
        *,
        labels: Tensor | None = None,
        speakers: Tensor | None = None,
        low_res: Tensor | None = None,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """labels / speakers: n ids each (the null id, or None for all, means "any"). Guidance
        contrasts them with the fully unconditional model. low_res: n coarse spectrograms
        (n, 1, m, f) for a cascade stage (a base's samples; area-resized to the stage's
        ``low_res`` and augmented at half its training noise, seeded, so a call repeats)."""
        c = self.model.config
        cascade = stage_conditions(
            low_res, c.low_res, c.low_res_noise, n=n, channels=1, device=self.device
        )
        cond, uncond = dict(cascade), dict(cascade)
        for key, ids, null in (
            ("labels", labels, c.null_label),
            ("speakers", speakers, c.null_speaker),
        ):
            if null == 0:  # the model has no such condition
                if ids is not None:
                    raise ValueError(f"{key} given, but the model was trained without {key}")
                continue
            if ids is None:
                ids = torch.full((n,), null, dtype=torch.long, device=self.device)
            ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)
            if ids.shape != (n,):
                raise ValueError(f"{key} must have shape ({n},), got {tuple(ids.shape)}")
            if int(ids.min()) < 0 or int(ids.max()) > null:
                raise ValueError(f"{key} must lie in 0..{null} ({null}: any)")
            cond[key], uncond[key] = ids, torch.full_like(ids, null)
        return cond, uncond

    @torch.no_grad()
    def to_waveform(self, spectrograms: Tensor) -> Tensor:
        """(B, 1, M, T) or (B, M, T) spectrograms -> waveforms (B, hop * (T - 1)); a coarse
        base's (smaller M, T) are first upsampled bilinearly to the spectrogram's grid."""
        x = spectrograms[:, None] if spectrograms.ndim == 3 else spectrograms
        full = (self.spectrogram.n_mels, self.spectrogram.frames)
        if tuple(x.shape[-2:]) != full:
            x = F.interpolate(x.float(), size=full, mode="bilinear", align_corners=False)
        x = x[:, 0]
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
