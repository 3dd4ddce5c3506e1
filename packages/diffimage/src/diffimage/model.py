"""The image denoiser: diffcore's U-Net with a preset shape, plus what sampling needs to know
(image size, noise schedule, prediction type, class names), saved together in one
``config.json`` beside ``model.safetensors`` through ``diffcore.io``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

from diffcore.generation.cascade import check_stage
from diffcore.nn import UNet, UNetConfig, load_unet_preset
from diffcore.processes import (
    PROCESSES,
    DegradationProcess,
    GaussianProcess,
    named_schedule,
    parse_crappifier,
    process_fields,
    start_stats,
    time_limits,
)
from diffcore.schedules import NoiseSchedule
from diffcore.seeding import seeded
from diffimage.pixels import to_unit_range

PRESETS_FILE = "image.json"  # in the workspace's shared/presets/
SCHEDULES = ("cosine", "linear", "flow")
CRAPPIFIERS = ("blur", "downsample", "pixelate", "jpeg", "noise")  # what --process may combine


@dataclass(frozen=True)
class ImageModelConfig:
    """An image diffusion model: the network's shape and the process it was trained with."""

    unet: UNetConfig  # the network (a dict is accepted: config.json stores one)
    image_size: tuple[int, int] = (28, 28)  # (H, W) of generated images
    schedule: Literal["cosine", "linear", "flow"] = "cosine"  # Nichol & Dhariwal's, DDPM's, or
    # flow matching's straight path (diffcore.processes.PROCESSES["flow"] sets the four fields)
    logsnr_min: float = -10.0  # cosine schedule: log-SNR at t = 1
    logsnr_max: float = 10.0  # cosine schedule: log-SNR at t = 0
    schedule_shift: float = (
        0.0  # cosine schedule: log-SNR shift (2 log(64 / resolution) for big images)
    )
    prediction: Literal["eps", "x0", "v", "edm", "flow"] = "v"  # network target (v: Salimans & Ho)
    weighting: Literal["uniform", "min_snr", "snr_plus_one"] = "min_snr"  # loss weight over SNR
    time_sampling: Literal["uniform", "logit_normal"] = "uniform"  # training times
    min_snr_gamma: float = 5.0  # min-SNR weighting's clip (Hang et al. 2023)
    time_range: tuple[float, float] = (0.0, 1.0)  # times trained on: all, or an expert's range
    class_names: tuple[str, ...] = ()  # names of labels 0..num_classes-1 (for file names, reports)
    text_encoder: str | None = None  # folder of the transformers caption encoder, when captioned
    # Crappification instead of Gaussian noise: a spec such as "blur:3+jpeg:10" or
    # "downsample:1+noise:0.3" (diffcore.processes.parse_crappifier); the network then restores
    # (predicts the correction to x0) and samples with the refinement samplers ("cold").
    degradation: str = ""
    start: tuple[tuple[float, float], ...] = ()  # per channel (mean, std) of training images'
    # means: refinement starts from a constant picture drawn from these (degradation only)
    # A cascade stage (super-resolution): the (H, W) of the low-resolution image it is given
    # (its U-Net stacks it, upsampled, onto x), trained with that image noise-augmented at a
    # VE level drawn uniformly in [0, low_res_noise] and sampled at half of it.
    low_res: tuple[int, int] | None = None
    low_res_noise: float = 0.2

    def __post_init__(self) -> None:
        if isinstance(self.unet, dict):
            object.__setattr__(self, "unet", UNetConfig(**self.unet))
        if not isinstance(self.unet, UNetConfig):
            raise TypeError(f"ImageModelConfig.unet must be a UNetConfig, got {self.unet!r}")
        object.__setattr__(self, "image_size", tuple(self.image_size))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "time_range", tuple(float(v) for v in self.time_range))
        time_limits(self.time_range)  # checks the range
        object.__setattr__(self, "start", tuple(tuple(float(v) for v in p) for p in self.start))
        stage = check_stage(self.low_res, self.low_res_noise, self.unet, "ImageModelConfig")
        object.__setattr__(self, "low_res", stage)
        if self.degradation:
            parse_crappifier(self.degradation, allowed=CRAPPIFIERS)  # checks the spec
            if self.time_range != (0.0, 1.0):
                raise ValueError("a model trained on a degradation covers all severities")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(f"ImageModelConfig.image_size must be (H, W), got {self.image_size}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"ImageModelConfig.schedule must be one of {SCHEDULES}")
        n = self.unet.num_classes
        if self.class_names and len(self.class_names) != n:
            raise ValueError(
                f"ImageModelConfig has {len(self.class_names)} class names for {n} classes"
            )

    def noise_schedule(self) -> NoiseSchedule:
        ends = {"logsnr_min": self.logsnr_min, "logsnr_max": self.logsnr_max}
        return named_schedule(self.schedule, shift=self.schedule_shift, **ends)

    def process(self) -> GaussianProcess | DegradationProcess:
        if self.degradation:
            degrade, slope = parse_crappifier(self.degradation, allowed=CRAPPIFIERS)
            return DegradationProcess(degrade, noise_slope=slope, residual=True)
        return GaussianProcess(
            self.noise_schedule(),
            prediction=self.prediction,
            weighting=self.weighting,
            min_snr_gamma=self.min_snr_gamma,
            time_sampling=self.time_sampling,
            **time_limits(self.time_range),
        )


class ImageDiffusion(nn.Module):
    """``net(x, t, *, labels=None, context=None)``: x (B, C, H, W) noised image in the process's
    input scaling, t (B,) time in [0, 1] -> the prediction target, shaped like x."""

    config_class = ImageModelConfig

    def __init__(self, config: ImageModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ImageModelConfig):
            raise TypeError(
                f"ImageDiffusion expects an ImageModelConfig, got {type(config).__name__}"
            )
        self.config = config
        self.unet = UNet(config.unet)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        *,
        labels: Tensor | None = None,
        context: Tensor | None = None,
        low_res: Tensor | None = None,
        low_res_sigma: Tensor | None = None,
    ) -> Tensor:
        cascade = {"low_res": low_res, "low_res_sigma": low_res_sigma}  # (None for no stage)
        return self.unet(x, t, labels=labels, context=context, **cascade)

    @property
    def process(self) -> GaussianProcess | DegradationProcess:
        return self.config.process()

    @property
    def channels(self) -> int:
        return self.config.unet.in_channels

    @property
    def num_classes(self) -> int | None:
        return self.config.unet.num_classes

    @property
    def null_label(self) -> int | None:
        """The label meaning "no class" (classifier-free guidance's unconditional branch)."""
        return self.config.unet.num_classes

    @property
    def context_dim(self) -> int | None:
        return self.config.unet.context_dim


def build_model(
    preset: str = "fmnist",
    *,
    channels: int,
    image_size: tuple[int, int],
    num_classes: int | None = None,
    class_names: tuple[str, ...] = (),
    context_dim: int | None = None,
    text_encoder: str | None = None,
    presets_file: str = PRESETS_FILE,
    unet: dict[str, Any] | None = None,
    **process: Any,
) -> ImageDiffusion:
    """A fresh model from a U-Net preset of ``shared/presets/image.json`` ("tiny", "fmnist",
    "base"). unet: overrides of preset fields; process: overrides of ImageModelConfig's
    schedule / prediction / weighting fields."""
    if process.get("low_res") is not None:  # a cascade stage: its U-Net takes the low-res image
        unet = {"low_res_channels": channels, **(unet or {})}
    unet_config = load_unet_preset(
        presets_file,
        preset,
        in_channels=channels,
        num_classes=num_classes,
        context_dim=context_dim,
        **(unet or {}),
    )
    known = {f.name for f in dataclasses.fields(ImageModelConfig)}
    unknown = sorted(set(process) - known)
    if unknown:
        raise ValueError(f"unknown model settings {unknown}; ImageModelConfig has {sorted(known)}")
    config = ImageModelConfig(
        unet=unet_config,
        image_size=tuple(image_size),
        class_names=tuple(class_names),
        text_encoder=text_encoder,
        **process,
    )
    return ImageDiffusion(config)


def model_for_data(
    preset: str,
    data: Any,
    *,
    conditional: bool = True,
    encoder: Any = None,
    process: str = "diffusion",
    time_range: tuple[float, float] = (0.0, 1.0),
    seed: int | None = None,
    settings: dict[str, Any] | None = None,
) -> ImageDiffusion:
    """A fresh ``preset`` model shaped for ``data`` (an ``ImageData``): its channels and image
    size, its classes when ``conditional`` and the data has labels, and captions encoded by
    ``encoder`` (a ``TextEncoder``; it is saved beside the model). ``process``: "diffusion"
    (the config's defaults), "flow" (flow matching; ``diffcore.processes.PROCESSES``) or a
    crappifier spec of ``CRAPPIFIERS`` such as "blur+noise:0.3" (a restorer; see
    ``ImageModelConfig.degradation``).
    time_range: the times (lo, hi) it trains on, for an expert per noise level.
    seed: the initial weights' seed (None: torch's global generator). settings: fields of
    ``ImageModelConfig`` (weighting, prediction...) over the process's; an unknown one is a
    ValueError naming the fields."""
    classes = conditional and data.labels is not None
    if process in PROCESSES:
        fields: dict[str, Any] = process_fields(process)
    else:
        parse_crappifier(process, allowed=CRAPPIFIERS)  # a bad name fails before the stats
        images = to_unit_range(data.images[:10_000])
        fields = {"degradation": process, "start": start_stats(images)}
    with seeded(seed):
        return build_model(
            preset,
            channels=data.channels,
            image_size=data.size,
            num_classes=data.num_classes if classes else None,
            class_names=data.class_names if classes else (),
            context_dim=encoder.dim if encoder is not None else None,
            text_encoder="text_encoder" if encoder is not None else None,
            time_range=tuple(time_range),
            **(fields | (settings or {})),
        )
