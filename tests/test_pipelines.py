"""The four domain pipelines share one shape: each loads from a saved folder and samples with the
same keywords (``sampler``, ``steps``, ``guidance``, ``seed``, ``batch_size``), and a seed gives
the same samples whatever the batch size. Only each package's public API is imported."""

from __future__ import annotations

import string

import pytest
import torch

from diffaudio import AudioPipeline, AudioUNet, SpectrogramConfig, audio_unet_config
from diffimage import ImagePipeline, build_model
from diffprotein import ProteinDenoiser, ProteinPipeline, ProteinRecord, build_denoiser, load_preset
from difftext import TextPipeline, train_char_tokenizer
from difftext import build_model as build_text_model


def image_pipeline() -> tuple[ImagePipeline, dict]:
    torch.manual_seed(0)
    model = build_model("tiny", channels=1, image_size=(8, 8), num_classes=2)
    return ImagePipeline(model), {"labels": [0, 1, 1, 0, 1]}


def audio_pipeline() -> tuple[AudioPipeline, dict]:
    torch.manual_seed(0)
    spec = SpectrogramConfig(frames=16)
    config = audio_unet_config("tiny", spec, label_names=("0", "1"), speaker_names=("a",))
    model = AudioUNet(config)
    torch.nn.init.normal_(model.unet.conv_out.weight, std=0.05)  # samples depend on the noise
    return AudioPipeline(model), {"labels": torch.tensor([0, 1, 2, 0, 1])}


def protein_pipeline() -> tuple[ProteinPipeline, dict]:
    torch.manual_seed(0)
    records = [ProteinRecord("a", "MKVLAAGW", "alpha"), ProteinRecord("b", "GSHMCCPQRT", "beta")]
    model = build_denoiser(records, load_preset("tiny"))
    return ProteinPipeline(model), {"family": "beta", "length": [6, 9, 6, 12, 9]}


def text_pipeline() -> tuple[TextPipeline, dict]:
    tokenizer = train_char_tokenizer([string.printable])
    model = build_text_model("diffusion", tokenizer, 24, preset="tiny", seed=0)
    return TextPipeline(model), {"prompt": ["To be", "", "Or not", "To be", ""], "length": 24}


PIPELINES = {
    "image": (image_pipeline, "ddpm"),
    "audio": (audio_pipeline, "euler_ancestral"),
    "protein": (protein_pipeline, "masked_ancestral"),
    "text": (text_pipeline, "confidence"),
}


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and bool(torch.allclose(a, b, rtol=0, atol=1e-5))
    return [str(getattr(x, "seq", x)) for x in a] == [str(getattr(x, "seq", x)) for x in b]


@pytest.mark.parametrize("domain", PIPELINES)
def test_a_saved_pipeline_samples_the_same_with_the_same_keywords_at_any_batch_size(
    domain, tmp_path
):
    build, sampler = PIPELINES[domain]
    pipe, conditions = build()
    folder = pipe.save_pretrained(tmp_path / domain)
    loaded = type(pipe).from_pretrained(folder)
    common = dict(sampler=sampler, steps=4, guidance=2.0, seed=7, progress=False, **conditions)
    one = loaded.sample(5, batch_size=1, **common)
    eight = loaded.sample(5, batch_size=8, **common)
    assert len(one) == 5 and same(one, eight)
    assert same(one, pipe.sample(5, batch_size=2, **common))  # the saved model is the model
    assert not same(one, loaded.sample(5, batch_size=8, **{**common, "seed": 8}))


def test_a_protein_model_folder_is_a_protein_denoiser_folder(tmp_path):
    pipe, _ = protein_pipeline()
    folder = pipe.save_pretrained(tmp_path / "p")
    assert isinstance(ProteinPipeline.from_pretrained(folder).model, ProteinDenoiser)
