"""Refiners: the level predictor, the strength a level maps to, and refine's per-level edits."""

import pytest
import torch

from diffcore.training import TrainConfig
from diffimage import ImagePipeline, build_model
from diffimage.data import ImageData
from diffimage.refine import (
    load_level_predictor,
    predict_levels,
    refine,
    strength_for_level,
    train_level_predictor,
)


def shapes(n: int = 256, seed: int = 0) -> ImageData:
    """Bright squares at random places on a dark 16 x 16 background, two classes by size."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, 16, 16, dtype=torch.uint8)
    labels = torch.randint(0, 2, (n,), generator=g)
    for i in range(n):
        side = 4 + 4 * int(labels[i])
        r, c = torch.randint(0, 16 - side + 1, (2,), generator=g).tolist()
        images[i, 0, r : r + side, c : c + side] = 255
    return ImageData(images, labels, ("small", "big"))


def pipeline(**process) -> ImagePipeline:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model("tiny", channels=1, image_size=(16, 16), num_classes=2, **process)
    return ImagePipeline(model)


RESTORER = {"degradation": "blur:3+noise:0.5", "start": ((-0.7, 0.1),)}


def test_a_restorers_strength_is_its_level_and_a_gaussians_follows_its_grid():
    restorer = pipeline(**RESTORER)
    assert strength_for_level(restorer, 0.4, "cold", 10) == 0.4
    assert strength_for_level(restorer, 0.0, "cold", 10) == 0.1  # at least one step
    gaussian = pipeline()
    # ddim walks even steps of time (trailing grid): the share of steps is the time itself
    assert strength_for_level(gaussian, 0.5, "ddim", 10) == pytest.approx(0.5, abs=0.1)
    # dpmpp_2m's Karras grid (rho = 7, sigma from e^-5 to e^5): 3 of its 10 levels lie at or
    # below sigma(0.5) = 1, so the edit runs its last 3 steps
    assert strength_for_level(gaussian, 0.5, "dpmpp_2m", 10) == 0.3


def test_the_level_predictor_learns_to_read_the_level(tmp_path):
    data = shapes()
    model = pipeline(**RESTORER).model
    config = TrainConfig(steps=40, batch_size=32, lr=3e-3, ema_decay=None, log_every=10)
    result = train_level_predictor(model, data, config, out_dir=tmp_path, progress=False)
    predictor = load_level_predictor(result.final_model)
    x0 = data.images[:128].float() / 127.5 - 1
    t = torch.linspace(0.05, 0.95, 128, dtype=torch.float64)
    xt = model.process.corrupt(x0, t, torch.Generator().manual_seed(1))
    error = float(((predict_levels(predictor, xt) - t.float()) ** 2).mean())
    assert error < 0.5 * float(((0.5 - t) ** 2).mean()), error  # beats the best constant


class _Recorder:
    """A pipeline stand-in that records the edits refine asks for."""

    restores, sigma_min = True, None

    def __init__(self) -> None:
        self.calls = []

    def plan(self, sampling):
        from diffcore.generation import RefineOptions

        return RefineOptions.build(sampling.get("sampler"), sampling.get("steps", 10), 1, {}), {}

    def edit(self, x, strength, **kw):
        self.calls.append((strength, kw.get("labels")))
        return x + strength


class _FixedLevels(torch.nn.Module):
    def __init__(self, levels):
        super().__init__()
        self.logits = torch.logit(torch.tensor(levels))
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.logits[: len(x), None]


def test_refine_edits_each_group_of_images_from_its_own_level():
    pipe, images = _Recorder(), torch.zeros(4, 1, 2, 2)
    labels = torch.tensor([0, 1, 0, 1])
    predictor = _FixedLevels([0.21, 0.62, 0.19, 0.6])
    out, strengths = refine(pipe, images, predictor=predictor, labels=labels, steps=10)
    assert strengths.tolist() == pytest.approx([0.2, 0.6, 0.2, 0.6])
    assert sorted((round(s, 2), lab.tolist()) for s, lab in pipe.calls) == [
        (0.2, [0, 0]),
        (0.6, [1, 1]),
    ]
    assert out[:, 0, 0, 0].tolist() == pytest.approx([0.2, 0.6, 0.2, 0.6])
    with pytest.raises(ValueError, match="strength or a level predictor"):
        refine(pipe, images)
