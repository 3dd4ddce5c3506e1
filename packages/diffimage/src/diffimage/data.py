"""Image data sets as tensors: a Hugging Face data set by name, local parquet / image folders
through ``datasets``, or in-memory arrays.

Every adapter ends in :class:`ImageData`: uint8 pixels (N, C, H, W), optional integer labels with
their names, optional captions. Pixels are scaled to [-1, 1] only when a batch is taken, so 60,000
Fashion-MNIST images hold 47 MB, not 188 MB. Images that do not share one size are fitted to
``ImageSpec.size`` by the ``fit`` policy (resize, center-crop, pad) or refused with the row named.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from diffcore.io import hub_name, missing_source
from diffimage.pixels import (
    FITS,
    MODES,
    Fit,
    convert_channels,
    fit_image,
    pil_to_tensor,
    to_uint8,
    to_unit_range,
)
from diffimage.png import check_png_length

__all__ = [
    "ImageData",
    "ImageSpec",
    "fit_image",
    "from_arrays",
    "from_hf_dataset",
    "from_pil",
    "keep_batch",
    "load_images",
    "to_uint8",
    "to_unit_range",
]


@dataclass(frozen=True)
class ImageSpec:
    """How raw images become training tensors."""

    size: tuple[int, int] | None = None  # (H, W); None = the data's own size (must be shared)
    channels: int | None = None  # 1, 3 or 4; None = 1 if the first image is grey, else 3
    fit: Fit = (
        "none"  # none: sizes must equal `size` | resize | center_crop | pad (centered, black)
    )

    def __post_init__(self) -> None:
        if self.size is not None:
            size = (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
            if len(size) != 2 or any(int(s) != s or s < 1 for s in size):
                raise ValueError(f"ImageSpec.size must be (H, W) positive ints, got {self.size!r}")
            object.__setattr__(self, "size", (int(size[0]), int(size[1])))
        if self.channels is not None and self.channels not in MODES:
            raise ValueError(f"ImageSpec.channels must be 1, 3 or 4, got {self.channels!r}")
        if self.fit not in FITS:
            raise ValueError(f"ImageSpec.fit must be one of {FITS}, got {self.fit!r}")
        if self.fit != "none" and self.size is None:
            raise ValueError(f"ImageSpec.fit={self.fit!r} needs a target size (H, W)")


@dataclass
class ImageData:
    """A data set of images held in memory.

    images: (N, C, H, W) uint8; labels: (N,) long or None; class_names: one name per label value
    (empty when unknown); captions: N strings or None; context: (N, D) caption embeddings, filled
    by :func:`diffimage.conditioning.attach_captions`.
    """

    images: Tensor
    labels: Tensor | None = None
    class_names: tuple[str, ...] = ()
    captions: list[str] | None = None
    context: Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != torch.uint8:
            raise TypeError(
                f"ImageData.images must be a (N, C, H, W) uint8 tensor, got "
                f"{tuple(self.images.shape)} {self.images.dtype}"
            )
        n = self.images.shape[0]
        if self.labels is not None and tuple(self.labels.shape) != (n,):
            raise ValueError(
                f"ImageData.labels must have shape ({n},), got {tuple(self.labels.shape)}"
            )
        if self.captions is not None and len(self.captions) != n:
            raise ValueError(f"ImageData has {n} images but {len(self.captions)} captions")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def size(self) -> tuple[int, int]:
        return (self.images.shape[2], self.images.shape[3])

    @property
    def num_classes(self) -> int | None:
        if self.labels is None:
            return None
        return len(self.class_names) or int(self.labels.max()) + 1

    def __getitem__(self, index: int | Sequence[int] | slice) -> dict[str, Tensor]:
        """One sample (int index) or a batch (sequence or slice of indices)."""
        if isinstance(index, slice):
            return self.__getitems__(range(len(self))[index])
        if isinstance(index, int):
            return {k: v[0] for k, v in self.__getitems__([index]).items()}
        return self.__getitems__(index)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Tensor]:
        """A whole batch in one indexing operation (DataLoader uses this when present):
        ``{"images": (B, C, H, W) float in [-1, 1], "labels": (B,), "context": (B, D)}``."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        batch = {"images": to_unit_range(self.images[idx])}
        if self.labels is not None:
            batch["labels"] = self.labels[idx]
        if self.context is not None:
            batch["context"] = self.context[idx]
        return batch

    def subset(self, indices: Sequence[int] | Tensor) -> ImageData:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ImageData(
            self.images[idx],
            None if self.labels is None else self.labels[idx],
            self.class_names,
            None if self.captions is None else [self.captions[i] for i in idx.tolist()],
            None if self.context is None else self.context[idx],
        )


def keep_batch(batch: Any) -> Any:
    """``collate_fn`` for :class:`ImageData`: its ``__getitems__`` already built the batch."""
    return batch


def _target_size(spec: ImageSpec, first: tuple[int, int]) -> tuple[int, int]:
    return spec.size if spec.size is not None else first


def _fit_or_refuse(image: Tensor, spec: ImageSpec, size: tuple[int, int], where: str) -> Tensor:
    if tuple(image.shape[-2:]) == size:
        return image
    if spec.fit == "none":
        h, w = image.shape[-2:]
        raise ValueError(
            f"{where} is {h}x{w} (HxW) but the data set's size is {size[0]}x{size[1]}; "
            "choose a fit policy (fit='resize', 'center_crop' or 'pad' with a size) to mix sizes"
        )
    return fit_image(image, size, spec.fit)


# PIL images


def _channels_of(image: Image.Image) -> int:
    return 1 if image.mode in ("1", "L", "LA", "I", "I;16", "F") else 3


def _open(record: Any, where: str) -> Image.Image:
    """Decode one image: a PIL image, or a ``datasets`` record {bytes, path}, or a file path."""
    if isinstance(record, Image.Image):
        return record
    source: Any = record
    if isinstance(record, dict):
        source = record["bytes"] if record.get("bytes") else record.get("path")
    if source is None:
        raise ValueError(f"{where} holds no image (expected PNG/JPEG bytes or a file path)")
    # PIL's errors for a damaged file: OSError (unknown format, truncated), SyntaxError (bad
    # chunk), ValueError (a PNG text chunk bomb), DecompressionBombError (an absurd size).
    damaged = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        image = Image.open(io.BytesIO(data))
        image.load()
    except damaged as err:
        raise ValueError(f"{where} cannot be read as an image: {err}") from err
    if image.format == "PNG":
        check_png_length(data, where)
    return image


def from_pil(
    images: Sequence[Any],
    labels: Sequence[int] | Tensor | None = None,
    *,
    spec: ImageSpec = ImageSpec(),
    class_names: Sequence[str] = (),
    captions: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
) -> ImageData:
    """PIL images (or file paths / ``datasets`` {bytes, path} records) -> :class:`ImageData`.

    names: how to call each image in errors (file paths, "row 17"); default "image i".
    """
    if len(images) == 0:
        raise ValueError("no images to load")
    out: list[Tensor] = []
    channels, size = spec.channels, spec.size
    for i, record in enumerate(images):
        where = names[i] if names is not None else f"image {i}"
        image = _open(record, where)
        if channels is None:
            channels = _channels_of(image)
        pixels = pil_to_tensor(image, channels)
        size = size or tuple(pixels.shape[-2:])
        out.append(_fit_or_refuse(pixels, spec, size, where))
    label_tensor = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
    return ImageData(torch.stack(out), label_tensor, tuple(class_names), _list(captions))


def _list(captions: Sequence[str] | None) -> list[str] | None:
    return None if captions is None else [str(c) for c in captions]


# In-memory arrays


def from_arrays(
    images: Any,
    labels: Any = None,
    *,
    spec: ImageSpec = ImageSpec(),
    class_names: Sequence[str] = (),
    captions: Sequence[str] | None = None,
) -> ImageData:
    """In-memory pixels -> :class:`ImageData`.

    images: (N, H, W), (N, C, H, W) or (N, H, W, C) with C in {1, 3, 4}; uint8 in [0, 255] or
    float in [0, 1] (anything ``torch.as_tensor`` accepts, e.g. numpy arrays). labels: (N,) ints.
    """
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(
            f"images must be (N, H, W), (N, C, H, W) or (N, H, W, C), got shape {tuple(x.shape)}"
        )
    if x.shape[1] not in MODES and x.shape[-1] in MODES:
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] not in MODES:
        raise ValueError(f"images must have 1, 3 or 4 channels, got shape {tuple(x.shape)}")
    if x.dtype.is_floating_point:
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"float images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}] "
                "(pass uint8 for [0, 255])"
            )
        x = (x * 255).round().to(torch.uint8)
    elif x.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 or float, got {x.dtype}")
    if spec.channels is not None and spec.channels != x.shape[1]:
        x = convert_channels(x, spec.channels)
    size = _target_size(spec, tuple(x.shape[-2:]))
    x = _fit_or_refuse(x, spec, size, f"the array of shape {tuple(x.shape)}")
    y = None
    if labels is not None:
        y = torch.as_tensor(labels)
        if y.dtype.is_floating_point or y.dtype == torch.bool or tuple(y.shape) != (x.shape[0],):
            raise ValueError(
                f"labels must be ({x.shape[0]},) integers, got {tuple(y.shape)} {y.dtype}"
            )
        y = y.long()
    return ImageData(x.contiguous(), y, tuple(class_names), _list(captions))


# Data sets through `datasets`


def load_images(
    source: str | Path,
    *,
    split: str = "train",
    spec: ImageSpec = ImageSpec(),
    image_column: str | None = None,
    label_column: str | None = None,
    caption_column: str | None = None,
    limit: int | None = None,
) -> ImageData:
    """Load images through ``datasets.load_dataset``: a local folder in the Hub's layout
    (``train.parquet`` / ``test.parquet``), an image folder (one subfolder per class gives
    labels), one ``.parquet`` file, or a Hub data set named ``"hub:fashion_mnist"`` (only the
    ``hub:`` prefix reaches the network; any other missing path is an error at once).

    image_column: default the first column of type Image. label_column: default "label" or
    "labels" when present. limit: keep the first ``limit`` rows.
    """
    import datasets

    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False  # a local file: no "download count" request

    path = Path(source)
    if (problem := missing_source(source)) is not None:
        raise FileNotFoundError(problem)
    if path.is_file() and path.suffix == ".parquet":
        ds = datasets.load_dataset("parquet", data_files={split: str(path)}, split=split)
    elif path.is_file():
        raise ValueError(f"{path}: expected a folder, a .parquet file or hub:NAME")
    else:
        name = str(path) if path.exists() else hub_name(source)  # a local folder wins
        try:
            ds = datasets.load_dataset(name, split=split)
        except (ValueError, KeyError) as err:  # e.g. an unknown split
            raise ValueError(f"{source}: cannot load split {split!r}: {err}") from err
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return from_hf_dataset(
        ds,
        spec=spec,
        image_column=image_column,
        label_column=label_column,
        caption_column=caption_column,
        source=str(source),
    )


def from_hf_dataset(
    ds: Any,
    *,
    spec: ImageSpec = ImageSpec(),
    image_column: str | None = None,
    label_column: str | None = None,
    caption_column: str | None = None,
    source: str = "the data set",
) -> ImageData:
    """A ``datasets.Dataset`` -> :class:`ImageData`; images are decoded here so a corrupt one is
    reported with its row number and file."""
    import datasets

    features = ds.features
    columns = list(features)
    if image_column is None:
        image_column = next((c for c in columns if isinstance(features[c], datasets.Image)), None)
        if image_column is None:
            raise ValueError(f"{source}: no image column; columns are {columns}")
    for role, column in (
        ("image", image_column),
        ("label", label_column),
        ("caption", caption_column),
    ):
        if column is not None and column not in features:
            raise ValueError(f"{source}: no {role} column {column!r}; columns are {columns}")
    if label_column is None:
        label_column = next((c for c in ("label", "labels") if c in features), None)
    if isinstance(features[image_column], datasets.Image):
        ds = ds.cast_column(image_column, datasets.Image(decode=False))
    records = ds[image_column]
    names = [_row_name(source, i, r) for i, r in enumerate(records)]
    labels, class_names = None, ()
    if label_column is not None:
        labels, class_names = _labels(
            ds[label_column], features[label_column], source, label_column
        )
    captions = None if caption_column is None else ds[caption_column]
    return from_pil(
        records, labels, spec=spec, class_names=class_names, captions=captions, names=names
    )


def _row_name(source: str, i: int, record: Any) -> str:
    path = record.get("path") if isinstance(record, dict) else None
    return f"{source} row {i}" + (f" ({path})" if path else "")


def _labels(
    values: list[Any], feature: Any, source: str, column: str
) -> tuple[Tensor, tuple[str, ...]]:
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return torch.as_tensor(values, dtype=torch.long), tuple(feature.names)
    if all(isinstance(v, str) for v in values):  # string labels: sorted names give the ids
        names = tuple(sorted(set(values)))
        index = {n: i for i, n in enumerate(names)}
        return torch.tensor([index[v] for v in values]), names
    for i, v in enumerate(values):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(
                f"{source} row {i}: label column {column!r} holds {v!r}; expected a "
                "non-negative integer or a string class name"
            )
    return torch.as_tensor(values, dtype=torch.long), ()
