"""Train, sample, edit, save and load: the pipeline on real Fashion-MNIST with the tiny preset."""

import shutil

import pytest
import torch

from diffcore.training import TrainConfig
from diffimage import ImagePipeline, build_model, load_images, train_model


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    """The tiny preset trained 60 steps on 256 real Fashion-MNIST images."""
    data = load_images(shared_data / "fashion_mnist", split="train", limit=256)
    model = build_model(
        "tiny", channels=1, image_size=data.size, num_classes=10, class_names=data.class_names
    )
    config = TrainConfig(
        steps=60, batch_size=32, lr=3e-3, log_every=10, checkpoint_every=30, ema_decay=0.9
    )
    out = tmp_path_factory.mktemp("run")
    result = train_model(model, data, config, out_dir=out, progress=False)
    return result, ImagePipeline.from_pretrained(result.final_model), data


def test_training_on_real_images_lowers_the_loss(trained):
    result, _, _ = trained
    losses = [row.loss for row in result.log]
    assert losses[-1] < 0.7 * losses[0], losses
    assert (result.final_model / "config.json").is_file()
    assert (result.final_model / "model.safetensors").is_file()


def test_sampling_is_deterministic_for_a_seed(trained):
    _, pipe, _ = trained
    kwargs = dict(labels=[0, 1, 2, 3], guidance=2.0, sampler="euler_ancestral", steps=6)
    a = pipe.sample(4, seed=3, **kwargs)
    b = pipe.sample(4, seed=3, **kwargs)
    c = pipe.sample(4, seed=4, **kwargs)
    assert a.shape == (4, 1, 28, 28)
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "euler", "heun", "dpmpp_2m"])
def test_every_sampler_runs_with_and_without_labels(trained, sampler):
    _, pipe, _ = trained
    assert pipe.sample(2, sampler=sampler, steps=3).shape == (2, 1, 28, 28)
    assert torch.isfinite(
        pipe.sample(2, labels=[5, 9], guidance=3.0, sampler=sampler, steps=3)
    ).all()


def test_samples_do_not_depend_on_the_batch_size(trained):
    _, pipe, _ = trained
    kwargs = dict(labels=[0, 1, 2, 3, 4, 5], guidance=2.0, sampler="ddpm", steps=4, seed=1)
    whole = pipe.sample(6, batch_size=4, **kwargs)
    torch.testing.assert_close(whole, pipe.sample(6, batch_size=1, **kwargs), rtol=0, atol=1e-5)


@pytest.mark.slow  # compiles the U-Net (tens of seconds on 2 cores)
@pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "clang++", "c++")), reason="needs a C++ compiler"
)
def test_compiled_pipeline_gives_the_eager_samples(trained):
    result, pipe, _ = trained
    fast = ImagePipeline.from_pretrained(result.final_model, compile=True)
    kwargs = dict(labels=[1, 7], guidance=2.0, sampler="ddpm", steps=4, seed=5)
    want, got = pipe.sample(2, **kwargs), fast.sample(2, **kwargs)
    assert (got - want).abs().max() < 2e-5  # fp32 reassociation only (see test_compiled_loop)


def test_edit_img2img_is_deterministic_and_strength_sets_how_far_it_moves(trained):
    _, pipe, data = trained
    images = data[list(range(4))]["images"]
    weak = pipe.edit(images, 0.1, steps=10, seed=0)
    assert torch.equal(weak, pipe.edit(images, 0.1, steps=10, seed=0))
    strong = pipe.edit(images, 1.0, steps=10, seed=0)
    assert (weak - images).abs().mean() < (strong - images).abs().mean()
    with pytest.raises(ValueError, match="strength"):
        pipe.edit(images, 0.0)


def test_inpainting_keeps_known_pixels_and_is_deterministic(trained):
    _, pipe, data = trained
    images = data[list(range(3))]["images"]
    mask = torch.zeros(1, 1, 28, 28, dtype=torch.bool)
    mask[..., 8:20, 8:20] = True  # repaint the middle
    out = pipe.inpaint(images, mask, labels=[0, 1, 2], guidance=2.0, steps=8, seed=0)
    keep = ~mask.expand_as(images)
    assert torch.equal(out[keep], images[keep])
    assert not torch.equal(out[~keep], images[~keep])
    assert torch.equal(out, pipe.inpaint(images, mask, labels=[0, 1, 2], guidance=2.0, steps=8))


def test_save_and_load_round_trip_gives_identical_samples(trained, tmp_path):
    _, pipe, _ = trained
    pipe.save_pretrained(tmp_path / "copy")
    again = ImagePipeline.from_pretrained(tmp_path / "copy")
    assert again.class_names == pipe.class_names
    kwargs = dict(labels=[7, 8], guidance=1.5, steps=5, seed=11)
    assert torch.equal(pipe.sample(2, **kwargs), again.sample(2, **kwargs))


def test_wrong_inputs_are_refused_with_what_was_expected(trained):
    _, pipe, _ = trained
    with pytest.raises(ValueError, match="expected 3 labels"):
        pipe.sample(3, labels=[1, 2])
    with pytest.raises(ValueError, match="unknown continuous sampler"):
        pipe.sample(1, sampler="plms")
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        pipe.edit(torch.zeros(1, 3, 28, 28), 0.5)
    with pytest.raises(ValueError, match="no text encoder"):
        pipe.sample(1, captions=["a shoe"])


def test_a_model_refuses_data_that_does_not_fit(shared_data, tmp_path):
    data = load_images(shared_data / "fashion_mnist", split="test", limit=32)
    rgb = build_model("tiny", channels=3, image_size=(28, 28))
    with pytest.raises(ValueError, match="1 channels but the model takes 3"):
        train_model(rgb, data, TrainConfig(steps=1, batch_size=8), out_dir=tmp_path)
    few = build_model("tiny", channels=1, image_size=(28, 28), num_classes=5)
    with pytest.raises(ValueError, match="5 classes"):
        train_model(few, data, TrainConfig(steps=1, batch_size=8), out_dir=tmp_path)


def test_a_distilled_model_samples_in_its_own_few_steps_by_default(trained, tmp_path):
    """Progressive distillation runs on the same loop and data; each round's folder loads as an
    ImagePipeline that samples with DDIM at its step count, guidance included, and a second
    call resumes to the same folders without training."""
    from diffimage import distill_model

    _, pipe, data = trained
    config = TrainConfig(steps=6, batch_size=16, lr=1e-3, log_every=3, ema_decay=None)
    folders = distill_model(
        pipe.model, data, config, out_dir=tmp_path, teacher_steps=4, steps=1, progress=False
    )
    assert [f.parent.name for f in folders] == ["steps_2", "steps_1"]
    student = ImagePipeline.from_pretrained(folders[-1])
    assert student.sampling_defaults["steps"] == 1
    steps = []
    images = student.sample(
        4, labels=[0, 1, 2, 3], guidance=2.0, seed=0, callback=lambda s, x, d: steps.append(s)
    )
    assert images.shape == (4, 1, 28, 28) and torch.isfinite(images).all()
    assert [s.total for s in steps] == [1]
    teacher_weights = dict(pipe.model.named_parameters())
    changed = [
        name
        for name, p in student.model.named_parameters()
        if not torch.equal(p, teacher_weights[name])
    ]
    assert changed, "distillation left the weights as they were"
    assert (
        distill_model(
            pipe.model, data, config, out_dir=tmp_path, teacher_steps=4, steps=1, progress=False
        )
        == folders
    )
