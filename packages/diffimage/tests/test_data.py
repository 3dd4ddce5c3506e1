"""Data adapters: Hub-layout parquet, image folders, single parquet files, in-memory arrays; the
fit policies; and errors that name the file or row and what was expected."""

import pytest
import torch
from PIL import Image

from diffimage.data import ImageData, ImageSpec, fit_image, from_arrays, load_images


def write_png(path, size, value=128, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(path)


def test_fashion_mnist_loads_from_its_hub_layout_folder(shared_data):
    data = load_images(shared_data / "fashion_mnist", split="test", limit=64)
    assert data.images.shape == (64, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels.shape == (64,) and 0 <= int(data.labels.min()) <= int(data.labels.max()) < 10
    assert data.class_names[0] == "T-shirt/top" and len(data.class_names) == 10
    batch = data[[0, 1, 2]]
    assert batch["images"].shape == (3, 1, 28, 28)
    assert batch["images"].min() >= -1 and batch["images"].max() <= 1
    assert torch.equal(batch["labels"], data.labels[:3])


def test_one_parquet_file_loads_and_the_same_rows_come_back(shared_data):
    whole = load_images(shared_data / "fashion_mnist", split="test", limit=8)
    single = load_images(shared_data / "fashion_mnist" / "test.parquet", limit=8)
    assert torch.equal(whole.images, single.images) and torch.equal(whole.labels, single.labels)


def test_an_image_folder_gives_labels_from_its_subfolders(tmp_path):
    for i in range(3):
        write_png(tmp_path / "boots" / f"{i}.png", (12, 10), value=10 * i)
        write_png(tmp_path / "coats" / f"{i}.png", (12, 10), value=200)
    data = load_images(tmp_path)
    assert data.images.shape == (6, 1, 10, 12)  # PIL sizes are (W, H)
    assert data.class_names == ("boots", "coats")
    assert sorted(data.labels.tolist()) == [0, 0, 0, 1, 1, 1]


def test_mixed_sizes_need_a_fit_policy_and_the_error_names_the_file(tmp_path):
    write_png(tmp_path / "a.png", (16, 16))
    write_png(tmp_path / "b.png", (20, 12))
    with pytest.raises(ValueError, match=r"b\.png.*12x20.*fit="):
        load_images(tmp_path)
    for fit in ("resize", "center_crop", "pad"):
        data = load_images(tmp_path, spec=ImageSpec(size=(8, 8), fit=fit))
        assert data.images.shape == (2, 1, 8, 8)


def test_a_corrupt_file_is_named(tmp_path):
    write_png(tmp_path / "good.png", (8, 8))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"broken\.png.*cannot be read as an image"):
        load_images(tmp_path)


def test_missing_columns_are_named_with_the_columns_there(shared_data):
    with pytest.raises(ValueError, match=r"no label column 'class'.*\['image', 'label'\]"):
        load_images(shared_data / "fashion_mnist", split="test", label_column="class", limit=4)
    with pytest.raises(ValueError, match="cannot load split 'validation'"):
        load_images(shared_data / "fashion_mnist", split="validation")


def test_colour_images_become_the_requested_channels(tmp_path):
    write_png(tmp_path / "x.png", (6, 6), value=100, mode="RGB")
    assert load_images(tmp_path).images.shape == (1, 3, 6, 6)
    grey = load_images(tmp_path, spec=ImageSpec(channels=1)).images
    assert grey.shape == (1, 1, 6, 6)
    assert int(grey[0, 0, 0, 0]) == round(0.299 * 100 + 0.114 * 155)  # PIL's luma


def test_arrays_in_every_layout_and_range():
    nchw = torch.randint(0, 256, (5, 3, 8, 6), dtype=torch.uint8)
    assert torch.equal(from_arrays(nchw).images, nchw)
    assert torch.equal(from_arrays(nchw.permute(0, 2, 3, 1)).images, nchw)  # NHWC
    assert from_arrays(torch.zeros(4, 8, 8)).images.shape == (4, 1, 8, 8)  # NHW
    floats = from_arrays(torch.full((2, 1, 4, 4), 1.0), labels=[3, 4])
    assert floats.images.max() == 255 and floats.labels.tolist() == [3, 4]
    assert from_arrays(nchw, spec=ImageSpec(channels=1)).images.shape == (5, 1, 8, 6)


def test_bad_arrays_say_what_was_expected():
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\]"):
        from_arrays(torch.full((2, 1, 4, 4), -0.5))
    with pytest.raises(ValueError, match="1, 3 or 4 channels"):
        from_arrays(torch.zeros(2, 5, 4, 7))
    with pytest.raises(ValueError, match=r"labels must be \(2,\) integers"):
        from_arrays(torch.zeros(2, 1, 4, 4), labels=[1, 2, 3])
    with pytest.raises(ValueError, match="fit='resize'"):
        from_arrays(torch.zeros(2, 1, 4, 4), spec=ImageSpec(size=(8, 8)))
    with pytest.raises(ValueError, match="needs a target size"):
        ImageSpec(fit="pad")


def test_fit_policies_keep_the_picture_where_expected():
    image = torch.zeros(1, 4, 8, dtype=torch.uint8)
    image[:, :, 2:6] = 255  # a bright middle band, 4 wide
    padded = fit_image(image, (8, 8), "pad")
    assert (
        padded.shape == (1, 8, 8) and padded[:, :2].max() == 0 and padded[:, 2:6, 2:6].min() == 255
    )
    cropped = fit_image(image, (4, 4), "center_crop")
    assert torch.equal(cropped, torch.full((1, 4, 4), 255, dtype=torch.uint8))
    assert fit_image(image, (2, 4), "resize").shape == (1, 2, 4)
    big = torch.full((1, 16, 8), 7, dtype=torch.uint8)
    assert fit_image(big, (8, 8), "pad").shape == (1, 8, 8)  # scaled down to fit, then padded


def test_image_data_checks_its_fields():
    with pytest.raises(TypeError, match="uint8"):
        ImageData(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="3 captions"):
        ImageData(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), captions=["a", "b", "c"])


def test_a_mistyped_path_fails_at_once_without_asking_the_hub(tmp_path, monkeypatch):
    import datasets

    def no_network(*args, **kwargs):
        raise AssertionError(f"load_dataset called with {args}")

    monkeypatch.setattr(datasets, "load_dataset", no_network)
    for source in ("data/fmnist", "fashion_mnist", tmp_path / "absent.parquet"):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            load_images(source)
    with pytest.raises(FileNotFoundError, match="hub:data/fmnist"):
        load_images("data/fmnist")


def test_only_the_hub_prefix_names_a_hub_data_set(shared_data, monkeypatch):
    import datasets

    local = datasets.load_dataset(
        "parquet", data_files=str(shared_data / "fashion_mnist" / "test.parquet"), split="train"
    )
    asked = []

    def fake_hub(name, split):  # stands in for the network: records what would be asked
        asked.append((name, split))
        return local

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    data = load_images("hub:zalando/fashion_mnist", split="test", limit=3)
    assert asked == [("zalando/fashion_mnist", "test")]
    assert data.images.shape[0] == 3
