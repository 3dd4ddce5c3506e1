"""PNG output people can look at, and image files read back for editing."""

import pytest
import torch
from PIL import Image

from diffimage.images import load_image_files, load_mask, make_grid, save_grid, save_images


def test_a_grid_tiles_images_with_black_padding():
    images = torch.ones(5, 1, 4, 6)
    grid = make_grid(images, columns=3, padding=1)
    assert grid.shape == (1, 2 * 5 + 1, 3 * 7 + 1)
    assert grid[0, 0].eq(-1).all() and grid[0, 1, 1:7].eq(1).all()
    assert make_grid(images, columns=3, padding=1, scale=2).shape == (1, 22, 44)


def test_saved_pngs_read_back_as_the_same_pixels(tmp_path):
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (3, 3, 5, 7), generator=g)
    images = pixels.float() / 127.5 - 1
    paths = save_images(images, tmp_path / "singles", names=["a", "b", "c"])
    assert [p.name for p in paths] == ["a.png", "b.png", "c.png"]
    back, files = load_image_files([tmp_path / "singles"], channels=3, size=(5, 7))
    assert files == paths
    assert torch.equal(((back + 1) * 127.5).round().long(), pixels)
    grid = save_grid(images, tmp_path / "grid.png")
    assert Image.open(grid).size == (2 * 7 + 3 * 2, 2 * 5 + 3 * 2)  # 2 columns, 2 rows


def test_a_mask_image_marks_light_pixels_for_repainting(tmp_path):
    mask = Image.new("L", (4, 4), 0)
    mask.paste(255, (0, 0, 2, 4))  # left half white
    mask.save(tmp_path / "mask.png")
    m = load_mask(tmp_path / "mask.png", size=(4, 4))
    assert m.shape == (1, 1, 4, 4) and m[..., :2].all() and not m[..., 2:].any()


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image_files([tmp_path / "nope.png"], channels=1, size=(4, 4))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        load_image_files([tmp_path / "empty"], channels=1, size=(4, 4))
