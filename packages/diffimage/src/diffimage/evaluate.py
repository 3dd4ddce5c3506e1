"""Measuring generated images with a *judge*: a classifier trained on the real training split.

Its penultimate features give FID and KID against the real test split, and its predictions say
whether class-conditional samples show the class that was asked for. This is the fast.ai course's
method (``miniai/fid.py``): on small data sets an in-domain classifier's features separate good
from bad samples better than InceptionV3's (whose ImageNet features barely see 28x28 clothing).
Absolute numbers are comparable only for one judge and one sample count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffcore.io import from_pretrained
from diffcore.metrics import frechet_distance, kernel_distance
from diffcore.training import TrainConfig, TrainResult, train
from diffimage.data import ImageData, keep_batch, to_unit_range


@dataclass(frozen=True)
class JudgeConfig:
    """A small ResNet classifier for images in [-1, 1]."""

    in_channels: int = 1  # image channels
    num_classes: int = 10  # classes it tells apart
    stem: int = 24  # width of the first convolution, at full resolution
    channels: tuple[int, ...] = (48, 96, 192)  # width per stage; every stage halves H and W
    feature_dim: int = 256  # width of the penultimate layer: the FID / KID features
    dropout: float = 0.2  # before the last layer, against over-fitting the training split
    class_names: tuple[str, ...] = ()  # names of the classes, for reports


class _Residual(nn.Module):
    """conv-BN-ReLU-conv-BN plus a (strided 1x1) shortcut: (B, I, H, W) -> (B, O, H/s, W/s)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = (
            nn.Identity()
            if cin == cout and stride == 1
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.skip(x))


class Judge(nn.Module):
    """``judge(x) -> logits`` (B, num_classes) for x (B, C, H, W) in [-1, 1];
    ``judge.features(x)`` -> (B, feature_dim), the penultimate activations."""

    config_class = JudgeConfig

    def __init__(self, config: JudgeConfig) -> None:
        super().__init__()
        self.config = c = config
        self.stem = nn.Sequential(
            nn.Conv2d(c.in_channels, c.stem, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c.stem),
            nn.ReLU(inplace=True),
        )
        # Downsampling from the first stage on keeps the judge cheap (a quarter of the work of
        # a full-resolution first stage) without costing accuracy on 28x28 images.
        stages, ch = [], c.stem
        for width in c.channels:
            stages.append(_Residual(ch, width, 2))
            ch = width
        self.stages = nn.Sequential(*stages)
        self.embed = nn.Sequential(
            nn.Linear(ch, c.feature_dim), nn.BatchNorm1d(c.feature_dim), nn.ReLU(inplace=True)
        )
        self.head = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(c.feature_dim, c.num_classes))

    def features(self, x: Tensor) -> Tensor:
        h = self.stages(self.stem(x))
        return self.embed(h.mean((2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Random translations of up to ``max_shift`` pixels, borders extended, plus left-right
    mirroring of half the batch: the augmentation that lifts a small CNN past 92 % here."""
    b, _, h, w = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (b, 2), generator=generator, device=x.device)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = shifts[:, 0] * 2.0 / w
    theta[:, 1, 2] = shifts[:, 1] * 2.0 / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="nearest", padding_mode="border", align_corners=False)
    flip = torch.rand(b, generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def train_judge(
    data: ImageData,
    *,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    judge: JudgeConfig | None = None,
    max_shift: int = 2,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a judge on labelled ``data`` with diffcore's loop (cross-entropy, label smoothing
    0.1, random shifts and mirroring); the classifier is saved in ``result.final_model``."""
    if data.labels is None:
        raise ValueError("a judge needs labelled data; the data set has no labels")
    judge = judge or JudgeConfig(
        in_channels=data.channels, num_classes=data.num_classes, class_names=data.class_names
    )
    config = config or TrainConfig(
        steps=2000,
        batch_size=256,
        lr=4e-3,
        weight_decay=5e-4,
        ema_decay=None,
        log_every=50,
        checkpoint_every=500,
    )

    def loss_fn(net: Any, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        x = _shift(batch["images"], max_shift, generator)
        return F.cross_entropy(net(x), batch["labels"], label_smoothing=0.1)

    return train(
        Judge(judge),
        loss_fn,
        data,
        config,
        out_dir=out_dir,
        collate_fn=keep_batch,
        device=device,
        progress=progress,
    )


def load_judge(directory: str | Path, *, device: str | torch.device = "cpu") -> Judge:
    return from_pretrained(Judge, directory, device=device).eval()


def _batched(judge: Judge, images: Tensor, fn: str, batch_size: int) -> Tensor:
    device = next(judge.parameters()).device
    judge.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size]
            x = to_unit_range(x) if x.dtype == torch.uint8 else x.float()
            out.append(getattr(judge, fn)(x.to(device)).float().cpu())
    return torch.cat(out)


def judge_features(judge: Judge, images: Tensor, *, batch_size: int = 500) -> Tensor:
    """Penultimate features (N, feature_dim) of images: uint8 (N, C, H, W) or float in [-1, 1]."""
    return _batched(judge, images, "features", batch_size)


def judge_predictions(judge: Judge, images: Tensor, *, batch_size: int = 500) -> Tensor:
    """Predicted classes (N,) of images: uint8 (N, C, H, W) or float in [-1, 1]."""
    return _batched(judge, images, "forward", batch_size).argmax(1)


def judge_accuracy(judge: Judge, data: ImageData) -> float:
    """Share of ``data`` the judge classifies as its label."""
    if data.labels is None:
        raise ValueError("accuracy needs labelled data")
    return float((judge_predictions(judge, data.images) == data.labels).float().mean())


@dataclass(frozen=True)
class SampleReport:
    """FID and KID of samples against reference images in judge features; accuracy: the share of
    class-conditional samples the judge gives the requested class (None without labels)."""

    fid: float
    kid: float
    kid_std: float
    accuracy: float | None
    samples: int


def compare_features(
    features: Tensor, reference: Tensor, *, seed: int = 0
) -> tuple[float, float, float]:
    """(FID, KID mean, KID std) between two feature sets (N, D) and (M, D)."""
    fid = frechet_distance(features, reference)
    g = torch.Generator().manual_seed(seed)
    kid, kid_std = kernel_distance(features, reference, subsets=50, subset_size=1000, generator=g)
    return fid, kid, kid_std


def score_samples(
    judge: Judge,
    samples: Tensor,
    reference: Tensor,
    *,
    labels: Tensor | None = None,
) -> SampleReport:
    """Score samples (N, C, H, W) in [-1, 1] against reference features (M, D) (from
    :func:`judge_features` of the real test split); labels: the classes asked for."""
    features = judge_features(judge, samples)
    fid, kid, kid_std = compare_features(features, reference)
    accuracy = None
    if labels is not None:
        accuracy = float((judge_predictions(judge, samples) == labels.cpu()).float().mean())
    return SampleReport(fid, kid, kid_std, accuracy, len(samples))
