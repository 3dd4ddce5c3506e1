"""A cascade stage: trained on its images' own downsampled, noise-augmented versions, sampled
given a base's samples; CascadePipeline runs base and stages in order."""

import pytest
import torch

from diffcore.generation import CascadePipeline
from diffcore.generation.cascade import low_res_input
from diffcore.training import TrainConfig
from diffimage import ImagePipeline, build_model, train_model
from diffimage.data import ImageData


def data(n: int = 64, size: int = 8) -> ImageData:
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(n, 1, size, size, generator=g) * 255).to(torch.uint8)
    return ImageData(images, torch.randint(0, 2, (n,), generator=g), ("a", "b"))


def stage(low_res=(4, 4), size=(8, 8)) -> ImagePipeline:
    torch.manual_seed(0)
    model = build_model("tiny", channels=1, image_size=size, num_classes=2, low_res=low_res)
    return ImagePipeline(model)


def test_the_stage_is_given_the_low_res_images_downsampled_and_augmented():
    images = torch.rand(5, 1, 8, 8) * 2 - 1
    fixed = low_res_input(images, (4, 4), 0.2, torch.Generator().manual_seed(0), fixed=True)
    assert fixed["low_res"].shape == (5, 1, 4, 4)
    assert torch.allclose(fixed["low_res_sigma"], torch.full((5,), 0.1))
    small = torch.nn.functional.interpolate(images, size=(4, 4), mode="area")
    # augmentation: (x + 0.1 eps) / sqrt(1 + 0.01), close to the downsampled images
    assert (fixed["low_res"] - small / (1 + 0.01) ** 0.5).abs().mean() < 0.2
    train = low_res_input(images, (4, 4), 0.2, torch.Generator().manual_seed(0))
    assert bool((train["low_res_sigma"] >= 0).all() and (train["low_res_sigma"] <= 0.2).all())


def test_a_stage_trains_and_samples_at_its_size_given_a_base(tmp_path):
    pipe = stage()
    config = TrainConfig(steps=3, batch_size=16, ema_decay=None, log_every=1)
    result = train_model(pipe.model, data(), config, out_dir=tmp_path, progress=False)
    trained = ImagePipeline.from_pretrained(result.final_model)
    assert trained.model.config.low_res == (4, 4)
    torch.manual_seed(1)
    base = ImagePipeline(build_model("tiny", channels=1, image_size=(4, 4), num_classes=2))
    cascade = CascadePipeline(base, [trained])
    out = cascade.sample(3, labels=[0, 1, 0], steps=3, seed=2)
    assert out.shape == (3, 1, 8, 8) and [s.shape[-1] for s in cascade.samples] == [4, 8]
    again = trained.sample(3, labels=[0, 1, 0], steps=3, seed=2, low_res=cascade.samples[0])
    assert torch.equal(out, again)  # the stage saw exactly the base's samples
    with pytest.raises(ValueError, match="needs low_res"):
        trained.sample(1, steps=2)
    with pytest.raises(ValueError, match="no cascade stage"):
        base.sample(1, steps=2, low_res=torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="edit and inpaint run on one model"):
        cascade.edit(out, 0.5)
