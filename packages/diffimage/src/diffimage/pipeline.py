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

from diffcore.generation import ContinuousPipeline
from diffcore.generation.cascade import low_res_input, stage_conditions
from diffcore.io import from_pretrained, read_sampling, save_pretrained
from diffcore.training import (
    LogRow,
    TrainConfig,
    TrainResult,
    dist_info,
    distill,
    drop_condition,
    resolve_device,
    train,
)
from diffimage.conditioning import TextEncoder, null_labels
from diffimage.data import ImageData, keep_batch
from diffimage.images import save_images
from diffimage.model import ImageDiffusion

TEXT_ENCODER_DIR = "text_encoder"  # caption encoder saved inside a model folder


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
    objective: Any | None = None,
    device: str | torch.device | None = None,
    resume: bool = True,
    progress: bool = True,
    on_log: Callable[[LogRow], None] | None = None,
) -> TrainResult:
    """Train ``model`` with diffcore's loop (EMA, checkpoints, exact resume) and return its
    result; ``result.final_model`` is a folder :meth:`ImagePipeline.from_pretrained` reads.

    label_dropout / caption_dropout: share of samples trained unconditionally (for guidance).
    hflip: mirror half of each batch left-right (for data where that keeps images plausible).
    objective: what ``loss(net, x0, generator, **cond)`` trains (default: ``model.process``;
    a ``diffcore.training.ProgressiveDistillation`` distils, see :func:`distill_model`).
    """
    check_data(model, data)
    process = objective if objective is not None else model.process
    null = model.null_label

    def loss_fn(net: Any, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        x0 = batch["images"]
        if hflip:
            flip = torch.rand(x0.shape[0], generator=generator, device=x0.device) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        cond = {}
        if "labels" in batch and null is not None:
            cond["labels"] = drop_condition(batch["labels"], label_dropout, null, generator)
        if "context" in batch and model.context_dim is not None:
            cond["context"] = drop_condition(batch["context"], caption_dropout, 0.0, generator)
        if model.config.low_res is not None:  # a cascade stage learns from augmented low-res x0
            cond |= low_res_input(x0, model.config.low_res, model.config.low_res_noise, generator)
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
    if text_encoder is not None and dist_info().is_main:  # under torchrun rank 0 writes
        text_encoder.save(result.final_model / TEXT_ENCODER_DIR)
    return result


def distill_model(
    teacher: ImageDiffusion,
    data: ImageData,
    config: TrainConfig,
    *,
    out_dir: str | Path,
    steps: int = 4,
    teacher_steps: int = 32,
    device: str | torch.device | None = None,
    **train_options: Any,
) -> list[Path]:
    """Progressive distillation (:mod:`diffcore.training.distill`) of a trained model: rounds of
    ``config.steps`` optimiser steps each halve the DDIM steps, from ``teacher_steps`` down to
    ``steps``. Returns one model folder per round (``out_dir/steps_<n>/final``); each samples
    through :class:`ImagePipeline` with DDIM at its own step count by default.
    train_options: as in :func:`train_model` (dropouts, hflip, text_encoder, progress...)."""
    device = resolve_device(device)

    def train_round(net: Any, objective: Any, folder: Path) -> TrainResult:
        return train_model(
            net, data, config, out_dir=folder, objective=objective, device=device, **train_options
        )

    return distill(
        teacher.to(device),
        train_round,
        teacher_steps=teacher_steps,
        steps=steps,
        out_dir=out_dir,
        clamp=ImagePipeline.data_range,
    )


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


class ImagePipeline(ContinuousPipeline):
    """A trained :class:`ImageDiffusion` (and its caption encoder) ready to sample and edit:
    ``sample(n, labels=, captions=)``, ``edit(images, strength)`` (img2img), ``inpaint(images,
    mask)``; images are float tensors (B, C, H, W) in [-1, 1]. Sampler, steps, guidance, seeds
    and batching: :class:`diffcore.generation.ContinuousPipeline`.

    compile: run the denoiser through ``torch.compile`` (:func:`diffcore.denoisers.compiled`:
    weights frozen in, CUDA graphs on CUDA) and keep the U-Net's weights channels-last (the
    layout oneDNN's fast convolutions want; the model is converted in place). The first sampling
    call per batch shape compiles (under a minute on a 2-core CPU); later calls are faster.
    """

    model_class = ImageDiffusion

    def __init__(
        self,
        model: ImageDiffusion,
        *,
        text_encoder: TextEncoder | None = None,
        compile: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(model, compile=compile, **options)
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
        cls, directory: str | Path, *, device: str | torch.device = "cpu", **options: Any
    ) -> ImagePipeline:
        directory = Path(directory)
        model = from_pretrained(ImageDiffusion, directory, device=device)
        encoder = None
        if model.config.text_encoder is not None:
            path = Path(model.config.text_encoder)
            encoder = TextEncoder(path if path.is_absolute() else directory / path, device=device)
        options.setdefault("sampling", read_sampling(directory))
        return cls(model, text_encoder=encoder, device=device, **options)

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = save_pretrained(self.model, directory)
        if self.text_encoder is not None:
            target = directory / TEXT_ENCODER_DIR
            if target.resolve() != self.text_encoder.directory.resolve():
                shutil.rmtree(target, ignore_errors=True)
                self.text_encoder.save(target)
        self.save_sampling(directory)
        return directory

    @staticmethod
    def save(
        images: Tensor, folder: str | Path, *, names: Sequence[str] | None = None
    ) -> list[Path]:
        """Write images (N, C, H, W) in [-1, 1] as ``folder/<name>.png`` (default 0000.png...)."""
        return save_images(images, folder, names=names)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.model.config.class_names

    def sample_shape(self) -> tuple[int, ...]:
        return (self.model.channels, *self.model.config.image_size)

    def conditions(
        self,
        n: int,
        *,
        labels: Tensor | Sequence[int] | None = None,
        captions: Sequence[str] | None = None,
        low_res: Tensor | None = None,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """labels: n class ids (None: unconditional); captions: n strings; low_res: n images
        (n, C, h, w) in [-1, 1] for a cascade stage to bring up to its size (any h, w: they
        are area-resized to the stage's ``low_res`` and augmented at half its training noise,
        with noise seeded 0, so a call is repeatable)."""
        model = self.model
        c = model.config
        cascade = stage_conditions(
            low_res, c.low_res, c.low_res_noise, n=n, channels=model.channels, device=self.device
        )
        cond, uncond = dict(cascade), dict(cascade)
        if labels is not None:
            if model.num_classes is None:
                raise ValueError("labels were given but the model is unconditional")
            labels = torch.as_tensor(labels, dtype=torch.long, device=self.device).reshape(-1)
            if len(labels) != n:
                raise ValueError(f"expected {n} labels, got {len(labels)}")
            if int(labels.min()) < 0 or int(labels.max()) >= model.num_classes:
                raise ValueError(f"labels must lie in 0..{model.num_classes - 1}")
            cond["labels"] = labels
            uncond["labels"] = null_labels(n, model.null_label, self.device)
        if captions is not None:
            if self.text_encoder is None or model.context_dim is None:
                raise ValueError("captions were given but the model has no text encoder")
            if len(captions) != n:
                raise ValueError(f"expected {n} captions, got {len(captions)}")
            context = self.text_encoder.encode(list(captions)).to(self.device)
            cond["context"], uncond["context"] = context, torch.zeros_like(context)
        return cond, uncond
