"""The spectrogram denoiser: diffcore's 2-D U-Net on (1, n_mels, frames) log-mel images,
conditioned on a class label and a speaker, plus the diffusion process it was trained with.

The U-Net's label embedding takes the class; the speaker enters as the U-Net's pooled context
vector, a one-hot of the speaker (all zeros = the null speaker), so both have a null value for
classifier-free guidance. The config carries everything needed to turn the model's output back
into sound (the spectrogram settings) and to read user input (class and speaker names).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffaudio.spectrogram import SpectrogramConfig
from diffcore.generation.cascade import check_stage
from diffcore.nn import UNet, UNetConfig, load_unet_preset
from diffcore.processes import (
    DegradationProcess,
    GaussianProcess,
    named_schedule,
    parse_crappifier,
    time_limits,
)

# What --process may combine for spectrograms (row 0 is the lowest mel band; -1 is silence).
CRAPPIFIERS = ("blur", "lowpass", "freq_mask", "time_mask", "downsample", "noise")


@dataclass(frozen=True)
class AudioUNetConfig:
    """A spectrogram U-Net and what its inputs and outputs mean."""

    unet: UNetConfig  # num_classes = len(label_names) or None; context_dim = len(speaker_names)
    spectrogram: SpectrogramConfig = SpectrogramConfig()  # how sound became the picture
    label_names: tuple[str, ...] = ()  # class names, id = position; () = no class conditioning
    speaker_names: tuple[str, ...] = ()  # speaker names, id = position; () = no speakers
    prediction: str = "v"  # what the network predicts (diffcore GaussianProcess)
    logsnr_min: float = -10.0  # cosine schedule range (diffcore CosineSchedule)
    logsnr_max: float = 10.0
    schedule: str = "cosine"  # or "flow" (diffcore.processes.PROCESSES["flow"] sets the four)
    weighting: str = "uniform"  # the loss weight over noise levels
    time_sampling: str = "uniform"  # training times: uniform or logit_normal
    time_range: tuple[float, float] = (0.0, 1.0)  # times trained on: all, or an expert's range
    # Crappification instead of Gaussian noise, e.g. "lowpass+noise:0.3" or "blur:4+time_mask"
    # (diffcore.processes.parse_crappifier): the network restores, sampled with "cold"/"direct"
    degradation: str = ""
    start: tuple[tuple[float, float], ...] = ()  # (mean, std) of training spectrograms' means
    # Cascades: ``size`` (mels, frames) makes a base that generates a coarser grid than the
    # spectrogram's, trained on area-downsampled spectrograms (upsampled again to be heard);
    # ``low_res`` (mels, frames) makes a stage that refines such a coarse spectrogram to the
    # full one, given it noise-augmented at a VE level in [0, low_res_noise] (half at sampling).
    size: tuple[int, int] | None = None
    low_res: tuple[int, int] | None = None
    low_res_noise: float = 0.2

    def __post_init__(self) -> None:
        # from_pretrained hands nested configs over as dicts (config.json).
        if isinstance(self.unet, dict):
            object.__setattr__(self, "unet", UNetConfig(**self.unet))
        if isinstance(self.spectrogram, dict):
            object.__setattr__(self, "spectrogram", SpectrogramConfig(**self.spectrogram))
        for name in ("label_names", "speaker_names"):
            object.__setattr__(self, name, tuple(str(n) for n in getattr(self, name)))
        object.__setattr__(self, "time_range", tuple(float(v) for v in self.time_range))
        time_limits(self.time_range)  # checks the range
        object.__setattr__(self, "start", tuple(tuple(float(v) for v in p) for p in self.start))
        stage = check_stage(self.low_res, self.low_res_noise, self.unet, "AudioUNetConfig")
        object.__setattr__(self, "low_res", stage)
        if self.size is not None:
            object.__setattr__(self, "size", tuple(int(v) for v in self.size))
            full = (self.spectrogram.n_mels, self.spectrogram.frames)
            fits = len(self.size) == 2 and all(
                1 <= a <= b for a, b in zip(self.size, full, strict=True)
            )
            if not fits:
                raise ValueError(
                    f"AudioUNetConfig.size must be (mels, frames) no larger than the "
                    f"spectrogram's {full}, got {self.size}"
                )
        if self.degradation:
            parse_crappifier(self.degradation, allowed=CRAPPIFIERS)  # checks the spec
            if self.time_range != (0.0, 1.0):
                raise ValueError("a model trained on a degradation covers all severities")
        u = self.unet
        if u.in_channels != 1 or (u.out_channels or 1) != 1:
            raise ValueError("AudioUNetConfig.unet must have one input and output channel")
        if (u.num_classes or 0) != len(self.label_names):
            raise ValueError(
                f"AudioUNetConfig.unet.num_classes ({u.num_classes}) must equal the number of "
                f"label_names ({len(self.label_names)}; None when there are none)"
            )
        if (u.context_dim or 0) != len(self.speaker_names):
            raise ValueError(
                f"AudioUNetConfig.unet.context_dim ({u.context_dim}) must equal the number of "
                f"speaker_names ({len(self.speaker_names)}; None when there are none)"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """The (mels, frames) the model generates: ``size``, or the spectrogram's."""
        return self.size or (self.spectrogram.n_mels, self.spectrogram.frames)

    @property
    def null_label(self) -> int:
        return len(self.label_names)

    @property
    def null_speaker(self) -> int:
        return len(self.speaker_names)


def audio_unet_config(
    preset: str,
    spectrogram: SpectrogramConfig,
    *,
    label_names: tuple[str, ...] = (),
    speaker_names: tuple[str, ...] = (),
    **overrides: Any,
) -> AudioUNetConfig:
    """Config from a U-Net preset of ``shared/presets/audio.json`` (tiny, small, base), sized for
    the given classes and speakers. ``overrides`` go to the U-Net (e.g. ``dropout=0.1``) or,
    for AudioUNetConfig's own fields (``prediction``...), to it."""
    own = {f.name for f in fields(AudioUNetConfig)}
    mine = {k: overrides.pop(k) for k in list(overrides) if k in own}
    if mine.get("low_res") is not None:  # a cascade stage: its U-Net takes the coarse input
        overrides.setdefault("low_res_channels", 1)
    unet = load_unet_preset(
        "audio.json",
        preset,
        in_channels=1,
        num_classes=len(label_names) or None,
        context_dim=len(speaker_names) or None,
        **overrides,
    )
    return AudioUNetConfig(unet, spectrogram, tuple(label_names), tuple(speaker_names), **mine)


class AudioUNet(nn.Module):
    """``net(x, t, *, labels=None, speakers=None)``: x (B, 1, n_mels, frames), t (B,) in [0, 1],
    labels / speakers (B,) long with the null id = number of names (None = all null).
    Returns the network output (B, 1, n_mels, frames)."""

    config_class = AudioUNetConfig

    def __init__(self, config: AudioUNetConfig) -> None:
        super().__init__()
        self.config = config
        self.unet = UNet(config.unet)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        *,
        labels: Tensor | None = None,
        speakers: Tensor | None = None,
        low_res: Tensor | None = None,
        low_res_sigma: Tensor | None = None,
    ) -> Tensor:
        c = self.config
        if labels is not None and not c.label_names:
            raise ValueError("labels were given to a model trained without class labels")
        context = None
        if c.speaker_names:
            if speakers is None:
                speakers = torch.full((x.shape[0],), c.null_speaker, device=x.device)
            if speakers.shape != (x.shape[0],) or speakers.dtype != torch.long:
                raise ValueError(
                    f"speakers must be a long tensor of shape ({x.shape[0]},), got "
                    f"{speakers.dtype} {tuple(speakers.shape)}"
                )
            if speakers.numel() and (speakers.min() < 0 or speakers.max() > c.null_speaker):
                raise ValueError(
                    f"speaker ids must lie in [0, {c.null_speaker}] ({c.null_speaker} = any)"
                )
            # one_hot of the null id is cut off: the null speaker is the zero vector.
            context = F.one_hot(speakers, c.null_speaker + 1)[:, :-1].to(x.dtype)
        elif speakers is not None:
            raise ValueError("speakers were given to a model trained without speakers")
        cascade = {"low_res": low_res, "low_res_sigma": low_res_sigma}  # (None for no stage)
        return self.unet(x, t, labels=labels, context=context, **cascade)

    @property
    def process(self) -> GaussianProcess | DegradationProcess:
        """The process the model is trained and sampled with: Gaussian diffusion, or the
        degradation it restores."""
        c = self.config
        if c.degradation:
            degrade, slope = parse_crappifier(c.degradation, allowed=CRAPPIFIERS)
            return DegradationProcess(degrade, noise_slope=slope, residual=True)
        schedule = named_schedule(c.schedule, logsnr_min=c.logsnr_min, logsnr_max=c.logsnr_max)
        options = {"weighting": c.weighting, "time_sampling": c.time_sampling}
        return GaussianProcess(
            schedule, prediction=c.prediction, **options, **time_limits(c.time_range)
        )


def seconds_per_step(
    clips: Any,
    spectrogram: SpectrogramConfig,
    batch_size: int,
    *,
    preset: str = "small",
    precision: str = "auto",
    device: str | torch.device = "cpu",
) -> float:
    """Seconds of one training step of a fresh ``preset`` model for ``clips`` (``AudioClips``:
    their labels and speakers are its conditions) on ``batch_size`` of them, as diffcore's loop
    takes it at ``precision``: what a run on a wall-clock budget plans with."""
    from diffaudio.pipeline import clip_spectrograms
    from diffcore.training import TrainConfig, step_timing

    names = {"label_names": clips.label_names, "speaker_names": clips.speaker_names}
    model = AudioUNet(audio_unet_config(preset, spectrogram, **names))
    part = clips.subset(range(min(len(clips), batch_size)))
    batch = {"x": clip_spectrograms(part, spectrogram)}
    batch |= {
        k: v for k, v in (("labels", part.labels), ("speakers", part.speakers)) if v is not None
    }

    def loss(net: nn.Module, b: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        cond = {k: v for k, v in b.items() if k in ("labels", "speakers")}
        return model.process.loss(net, b["x"], generator, **cond)

    settings = TrainConfig(steps=1, batch_size=batch_size, precision=precision)
    return step_timing(model, loss, batch, settings, device=device, trials=1).step
