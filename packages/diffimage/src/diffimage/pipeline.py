"""The public API: train a model on :class:`~diffimage.data.ImageData`, then sample, img2img and
inpaint with any diffcore sampler, with or without classifier-free guidance.

Images going in and out are float tensors (B, C, H, W) in [-1, 1]; ``diffimage.images`` turns them
into PNG files and grids.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from diffcore.denoisers import Clamped, compiled, condition, guidance
from diffcore.io import from_pretrained, save_pretrained
from diffcore.samplers import SAMPLERS
from diffcore.schedules import karras_grid, trailing_grid
from diffcore.training import LogRow, TrainConfig, TrainResult, train
from diffimage.conditioning import TextEncoder, drop_context, drop_labels, null_labels
from diffimage.data import ImageData, keep_batch
from diffimage.model import ImageDiffusion

TEXT_ENCODER_DIR = "text_encoder"  # caption encoder saved inside a model folder
# Samplers whose steps are posterior draws along the schedule: they walk the training times
# evenly (trailing spacing); the ODE solvers take Karras et al.'s sigma spacing.
_TIME_GRID = ("ddpm", "ddim", "euler_ancestral")


# Training


def train_model(
    model: ImageDiffusion,
    data: ImageData,
    config: TrainConfig,
    *,
    out_dir: str | Path,
    label_dropout: float = 0.1,
    caption_dropout: float = 0.1,
    hflip: bool = False,
    text_encoder: TextEncoder | None = None,
    device: str | torch.device | None = None,
    resume: bool = True,
    progress: bool = True,
    on_log: Callable[[LogRow], None] | None = None,
) -> TrainResult:
    """Train ``model`` with diffcore's loop (EMA, checkpoints, exact resume) and return its
    result; ``result.final_model`` is a folder :meth:`ImagePipeline.from_pretrained` reads.

    label_dropout / caption_dropout: share of samples trained unconditionally (for guidance).
    hflip: mirror half of each batch left-right (for data where that keeps images plausible).
    """
    check_data(model, data)
    process = model.process
    null = model.null_label

    def loss_fn(net: Any, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        x0 = batch["images"]
        if hflip:
            flip = torch.rand(x0.shape[0], generator=generator, device=x0.device) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        cond = {}
        if "labels" in batch and null is not None:
            cond["labels"] = drop_labels(batch["labels"], label_dropout, null, generator)
        if "context" in batch and model.context_dim is not None:
            cond["context"] = drop_context(batch["context"], caption_dropout, generator)
        return process.loss(net, x0, generator, **cond)

    result = train(
        model,
        loss_fn,
        data,
        config,
        out_dir=out_dir,
        collate_fn=keep_batch,
        device=device,
        resume=resume,
        progress=progress,
        on_log=on_log,
    )
    if text_encoder is not None:
        text_encoder.save(result.final_model / TEXT_ENCODER_DIR)
    return result


def check_data(model: ImageDiffusion, data: ImageData) -> None:
    """Raise ValueError when ``data`` does not fit ``model`` (channels, classes, captions)."""
    if data.channels != model.channels:
        raise ValueError(
            f"the data has {data.channels} channels but the model takes {model.channels}"
        )
    if model.num_classes is not None:
        if data.labels is None:
            raise ValueError("the model is class-conditional but the data has no labels")
        if int(data.labels.max()) >= model.num_classes or int(data.labels.min()) < 0:
            raise ValueError(
                f"labels span [{int(data.labels.min())}, {int(data.labels.max())}] but the model "
                f"has {model.num_classes} classes"
            )
    if model.context_dim is not None:
        if data.context is None:
            raise ValueError("the model takes captions but the data has no caption embeddings")
        if data.context.shape[1] != model.context_dim:
            raise ValueError(
                f"caption embeddings have {data.context.shape[1]} features, the model takes "
                f"{model.context_dim}"
            )


# Sampling


def sampling_grid(model: ImageDiffusion, sampler: str, steps: int) -> Tensor:
    """The noise levels (steps + 1,) ``sampler`` walks: trailing time spacing for the ancestral
    samplers, Karras spacing (rho = 7) between the trained extremes for the ODE solvers."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {sorted(SAMPLERS)}")
    process = model.process
    if sampler in _TIME_GRID:
        return trailing_grid(process.schedule, steps)
    sigma_min = float(process.schedule.sigma(process.t_min))
    return karras_grid(steps, sigma_min, process.sigma_max)


def network_calls(sampler: str, steps: int) -> int:
    """Network evaluations of ``steps`` grid steps (Heun: two per step but the last)."""
    return 2 * steps - 1 if sampler == "heun" else steps


def steps_for_calls(sampler: str, calls: int) -> int:
    """The most grid steps that fit into ``calls`` network evaluations."""
    return max(1, (calls + 1) // 2) if sampler == "heun" else calls


class ImagePipeline:
    """A trained :class:`ImageDiffusion` (and its caption encoder) ready to sample and edit.

    compile: run the denoiser through ``torch.compile`` (:func:`diffcore.denoisers.compiled`:
    weights frozen in, CUDA graphs on CUDA) and keep the U-Net's weights channels-last (the
    layout oneDNN's fast convolutions want; the model is converted in place). The first sampling
    call per batch shape compiles (under a minute on a 2-core CPU); later calls are faster.
    """

    def __init__(
        self,
        model: ImageDiffusion,
        *,
        text_encoder: TextEncoder | None = None,
        device: str | torch.device = "cpu",
        compile: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.compile = compile
        self.model = model.to(self.device).eval()
        if compile:
            self.model.to(memory_format=torch.channels_last)
        self.text_encoder = text_encoder
        if text_encoder is not None and text_encoder.dim != model.context_dim:
            raise ValueError(
                f"the text encoder gives {text_encoder.dim} features, the model takes "
                f"{model.context_dim}"
            )

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, device: str | torch.device = "cpu", compile: bool = False
    ) -> ImagePipeline:
        directory = Path(directory)
        model = from_pretrained(ImageDiffusion, directory, device=device)
        encoder = None
        if model.config.text_encoder is not None:
            path = Path(model.config.text_encoder)
            encoder = TextEncoder(path if path.is_absolute() else directory / path, device=device)
        return cls(model, text_encoder=encoder, device=device, compile=compile)

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = save_pretrained(self.model, directory)
        if self.text_encoder is not None:
            target = directory / TEXT_ENCODER_DIR
            if target.resolve() != self.text_encoder.directory.resolve():
                shutil.rmtree(target, ignore_errors=True)
                self.text_encoder.save(target)
        return directory

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.model.config.class_names

    def denoiser(
        self,
        *,
        labels: Tensor | None = None,
        captions: Sequence[str] | None = None,
        guidance_scale: float = 1.0,
        clamp: bool = True,
    ) -> Any:
        """``D(x, sigma)`` for a batch: conditioned on labels (B,) and/or captions, guided with
        ``guidance_scale`` (1 = plain conditional), x0 estimates clamped into [-1, 1]."""
        model = self.model
        base = model.process.denoiser(model)
        if clamp:
            base = Clamped(base)
        cond, uncond = {}, {}
        if labels is not None:
            if model.num_classes is None:
                raise ValueError("labels were given but the model is unconditional")
            labels = torch.as_tensor(labels, dtype=torch.long, device=self.device)
            cond["labels"] = labels
            uncond["labels"] = null_labels(len(labels), model.null_label, self.device)
        if captions is not None:
            if self.text_encoder is None or model.context_dim is None:
                raise ValueError("captions were given but the model has no text encoder")
            context = self.text_encoder.encode(captions).to(self.device)
            cond["context"], uncond["context"] = context, torch.zeros_like(context)
        if cond and guidance_scale == 1.0:
            base = condition(base, **cond)
        elif cond:
            base = guidance(base, guidance_scale, cond, uncond)
        if self.compile:
            return compiled(base, cuda_graphs=self.device.type == "cuda")
        return base

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        labels: Tensor | Sequence[int] | None = None,
        captions: Sequence[str] | None = None,
        guidance: float = 1.0,
        sampler: str = "dpmpp_2m",
        steps: int = 20,
        seed: int = 0,
        batch_size: int = 256,
        progress: bool = False,
    ) -> Tensor:
        """n new images (n, C, H, W) in [-1, 1]. labels: n class ids (or None: unconditional);
        captions: n strings; guidance: classifier-free guidance scale. Same seed and batch size,
        same images."""
        h, w = self.model.config.image_size
        return self._run(
            n, (h, w), labels, captions, guidance, sampler, steps, seed, batch_size, progress
        )

    @torch.no_grad()
    def img2img(
        self,
        images: Tensor,
        strength: float = 0.5,
        *,
        labels: Tensor | Sequence[int] | None = None,
        captions: Sequence[str] | None = None,
        guidance: float = 1.0,
        sampler: str = "dpmpp_2m",
        steps: int = 20,
        seed: int = 0,
        batch_size: int = 256,
        progress: bool = False,
    ) -> Tensor:
        """SDEdit (Meng et al. 2021): noise ``images`` (B, C, H, W) in [-1, 1] and run the last
        ``strength`` share of the sampler's steps. strength 1 ignores the input."""
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must lie in (0, 1], got {strength}")
        images = self._check_images(images, "images")
        return self._run(
            len(images), tuple(images.shape[-2:]), labels, captions, guidance, sampler, steps,
            seed, batch_size, progress, x_init=images, t_start=strength,
        )  # fmt: skip

    @torch.no_grad()
    def inpaint(
        self,
        images: Tensor,
        mask: Tensor,
        *,
        labels: Tensor | Sequence[int] | None = None,
        captions: Sequence[str] | None = None,
        guidance: float = 1.0,
        sampler: str = "dpmpp_2m",
        steps: int = 20,
        seed: int = 0,
        batch_size: int = 256,
        progress: bool = False,
    ) -> Tensor:
        """Regenerate the pixels of ``images`` (B, C, H, W) in [-1, 1] where ``mask`` is True
        (diffusers' convention: white = repaint); mask (B or 1, 1 or C, H, W). Pixels outside
        the mask are returned exactly as given."""
        images = self._check_images(images, "images")
        mask = torch.as_tensor(mask, device=self.device).bool()
        if (
            mask.ndim != 4
            or mask.shape[-2:] != images.shape[-2:]
            or mask.shape[0] not in (1, len(images))
            or mask.shape[1] not in (1, images.shape[1])
        ):
            raise ValueError(
                f"mask must be (B, 1 or C, H, W) like images {tuple(images.shape)}, got "
                f"{tuple(mask.shape)}"
            )
        known_mask = (~mask).expand_as(images)
        return self._run(
            len(images), tuple(images.shape[-2:]), labels, captions, guidance, sampler, steps,
            seed, batch_size, progress, known=images, mask=known_mask,
        )  # fmt: skip

    def _check_images(self, images: Tensor, name: str) -> Tensor:
        images = torch.as_tensor(images)
        if images.ndim != 4 or images.shape[1] != self.model.channels:
            raise ValueError(
                f"{name} must be (B, {self.model.channels}, H, W), got {tuple(images.shape)}"
            )
        if not images.dtype.is_floating_point:
            raise TypeError(f"{name} must be float in [-1, 1], got {images.dtype}")
        return images.to(self.device, torch.float32)

    def _run(
        self,
        n: int,
        size: tuple[int, int],
        labels: Any,
        captions: Sequence[str] | None,
        guidance_scale: float,
        sampler: str,
        steps: int,
        seed: int,
        batch_size: int,
        progress: bool,
        **edit: Tensor | float,
    ) -> Tensor:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
            if len(labels) != n:
                raise ValueError(f"expected {n} labels, got {len(labels)}")
        if captions is not None and len(captions) != n:
            raise ValueError(f"expected {n} captions, got {len(captions)}")
        grid = sampling_grid(self.model, sampler, steps)
        sample_fn = SAMPLERS[sampler]
        generator = torch.Generator(self.device).manual_seed(seed)
        shape = (self.model.channels, *size)
        out = []
        batches = range(0, n, batch_size)
        bar = tqdm(total=len(batches) * steps, desc=sampler, unit="step", disable=not progress)
        for start in batches:
            rows = slice(start, min(n, start + batch_size))
            count = rows.stop - rows.start
            denoiser = self.denoiser(
                labels=None if labels is None else labels[rows],
                captions=None if captions is None else list(captions[rows]),
                guidance_scale=guidance_scale,
            )
            noise = torch.randn((count, *shape), generator=generator, device=self.device)
            options = {k: (v[rows] if isinstance(v, Tensor) else v) for k, v in edit.items()}
            x = sample_fn(
                denoiser, noise, grid, generator=generator,
                callback=lambda *_: bar.update(1), **options,
            )  # fmt: skip
            out.append(x.clamp(-1, 1).cpu())
        bar.close()
        return torch.cat(out)
