"""Pictures people can look at: tensors in [-1, 1] to PNG files and grids, and PNG / JPEG files
back to tensors (for editing)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from diffcore.io import find_files
from diffimage.data import ImageSpec, from_pil
from diffimage.pixels import MODES, to_uint8, to_unit_range

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def to_pil(image: Tensor) -> Image.Image:
    """One image (C, H, W) in [-1, 1] -> a PIL image (grey, RGB or RGBA)."""
    if image.ndim != 3 or image.shape[0] not in MODES:
        raise ValueError(
            f"expected one image (C, H, W) with C in 1, 3, 4; got {tuple(image.shape)}"
        )
    pixels = to_uint8(image).permute(1, 2, 0).contiguous()
    h, w, c = pixels.shape
    return Image.frombytes(MODES[c], (w, h), bytes(pixels.reshape(-1).tolist()))


def make_grid(
    images: Tensor, *, columns: int | None = None, padding: int = 2, scale: int = 1
) -> Tensor:
    """Tile images (N, C, H, W) in [-1, 1] into one (C, H', W') picture, ``columns`` per row
    (default: about square), separated by ``padding`` black pixels, enlarged ``scale`` times."""
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"expected images (N, C, H, W) with N >= 1, got {tuple(images.shape)}")
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = torch.full((c, rows * (h + padding) + padding, columns * (w + padding) + padding), -1.0)
    for i, image in enumerate(images.float().cpu()):
        top, left = (
            padding + (i // columns) * (h + padding),
            padding + (i % columns) * (w + padding),
        )
        grid[:, top : top + h, left : left + w] = image
    if scale > 1:
        grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return grid


def save_grid(images: Tensor, path: str | Path, **grid_options: int) -> Path:
    """Write images (N, C, H, W) in [-1, 1] as one PNG grid (see :func:`make_grid`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(make_grid(images, **grid_options)).save(path)
    return path


def save_images(
    images: Tensor, folder: str | Path, *, names: Sequence[str] | None = None
) -> list[Path]:
    """Write each image (N, C, H, W) in [-1, 1] as ``folder/<name>.png`` (default 0000.png...)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"{i:04d}" for i in range(len(images))]
    if len(names) != len(images):
        raise ValueError(f"{len(images)} images but {len(names)} names")
    paths = []
    for image, name in zip(images, names, strict=True):
        paths.append(folder / f"{name}.png")
        to_pil(image).save(paths[-1])
    return paths


def image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """The image files named by ``inputs``: files as given, folders searched (sorted)."""
    return find_files(inputs, IMAGE_SUFFIXES, what="image")


def load_image_files(
    inputs: Sequence[str | Path], *, channels: int, size: tuple[int, int], fit: str = "resize"
) -> tuple[Tensor, list[Path]]:
    """Read image files (or folders of them) as (N, channels, H, W) floats in [-1, 1], each fitted
    to ``size``; returns the tensor and the files in order."""
    files = image_files(inputs)
    spec = ImageSpec(size=size, channels=channels, fit=fit)
    data = from_pil([str(f) for f in files], spec=spec, names=[str(f) for f in files])
    return to_unit_range(data.images), files


def load_mask(path: str | Path, *, size: tuple[int, int]) -> Tensor:
    """A mask image -> (1, 1, H, W) bool, True where it is light (> 127): the pixels to repaint."""
    data = from_pil(
        [str(path)], spec=ImageSpec(size=size, channels=1, fit="resize"), names=[str(path)]
    )
    return data.images > 127


def sample_names(labels: Tensor | None, class_names: Sequence[str], n: int) -> list[str]:
    """File names for ``n`` samples: ``0007`` or, with labels, ``0007_<class name or id>``."""
    if labels is None:
        return [f"{i:04d}" for i in range(n)]
    safe = lambda y: "".join(c if c.isalnum() else "-" for c in class_names[y])
    return [f"{i:04d}_{safe(y) if class_names else y}" for i, y in enumerate(labels.tolist())]


def save_preview(pipe: object, path: str | Path, rows: int, **sampling: object) -> Path:
    """Sample ``rows`` rows of one column per class (at most 16; 8 unconditional columns) with
    ``pipe`` (an ``ImagePipeline``; ``sampling``: its sample options) and save them as a grid."""
    from diffimage.conditioning import grid_labels

    columns, labels = grid_labels(pipe.model.num_classes, rows)
    images = pipe.sample(rows * columns, labels=labels, **sampling)
    return save_grid(images, path, columns=columns, scale=2)


def save_sample_files(
    images: Tensor,
    out: str | Path,
    names: Sequence[str],
    *,
    folder: str = "images",
    grid: Sequence[Tensor] = (),
    columns: int | None = None,
) -> tuple[Path, Path]:
    """Write each of ``images`` (N, C, H, W) as ``out/folder/<name>.png`` and a grid of them
    (or of ``grid``'s batches, one after another) as ``out/grid.png``, ``columns`` per row;
    returns (the folder, the grid file)."""
    save_images(images, Path(out) / folder, names=names)
    pictures = torch.cat(list(grid)) if grid else images
    return Path(out) / folder, save_grid(pictures, Path(out) / "grid.png", columns=columns, scale=2)
