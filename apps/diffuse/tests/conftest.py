"""Fixtures shared by the `diffuse` command's tests."""

import pytest
from PIL import Image


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Two classes of 8x8 grey images: bright left halves and bright top halves."""
    root = tmp_path_factory.mktemp("images")
    for name, box in (("left", (0, 0, 4, 8)), ("top", (0, 0, 8, 4))):
        (root / name).mkdir()
        for i in range(12):
            image = Image.new("L", (8, 8), 10 + i)
            image.paste(230, box)
            image.save(root / name / f"{i}.png")
    return root


@pytest.fixture
def one_thread():
    """Tiny models on one torch thread: on a busy 2-core machine two OpenMP threads waiting
    for each other make each pass far slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
