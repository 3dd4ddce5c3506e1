"""Fuzzing the config.json reader of ``from_pretrained``: missing keys, wrong types, damaged
text and another model's config give a ValueError naming the file, or the model the file
describes, never another exception type or a model built from a wrong value.

Run with ``--hypothesis-show-statistics`` to see how many cases ran.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from diffcore.io import from_pretrained, save_pretrained
from diffcore.nn.unet import UNet, UNetConfig

FUZZ = settings(max_examples=200)  # deterministic: the root conftest's hypothesis profile
CONFIG = UNetConfig(
    in_channels=1, channels=(8,), blocks_per_level=1, attention_levels=(), norm_groups=4, head_dim=8
)
GOOD = json.loads(json.dumps({**dataclasses.asdict(CONFIG), "_class": "diffcore.nn.unet.UNet"}))
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from([1, 4, 8, 16]),  # values a config could hold
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=2)
    ),
    max_leaves=5,
)
# Other models' configs: a token model's and a vocoder's shapes, as other domains write them.
OTHERS = [
    {"_class": "difftext.model.TextModel", "vocab_size": 64, "hidden_size": 32, "num_layers": 2},
    {"_class": "diffaudio.vocoder.Vocoder", "n_mels": 32, "channels": [16, 8], "hop_length": 128},
    {**GOOD, "_class": "diffimage.model.ImageModel", "image_size": [28, 28]},
]


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """config.json with keys dropped, values replaced, keys added, or the text cut."""
    fields = dict(draw(st.sampled_from([GOOD, *OTHERS])))
    for key in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del fields[key]
        else:
            fields[key] = draw(JSON_VALUES)
    if draw(st.booleans()):
        fields |= draw(st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=1))
    text = json.dumps(fields).encode()
    if draw(st.integers(0, 4)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz") / "model"
    save_pretrained(UNet(CONFIG), directory)
    return directory


def _load(directory: Path) -> UNet | None:
    """The model, or None after a ValueError naming config.json or, for a sound config of
    another shape than the saved weights, model.safetensors."""
    try:
        return from_pretrained(UNet, directory)
    except ValueError as err:
        named = [str(directory / name) in str(err) for name in ("config.json", "model.safetensors")]
        assert any(named), f"the error does not name the file: {err}"
        return None


def test_the_saved_config_loads_as_the_same_model(model_dir):
    model = _load(model_dir)
    assert model is not None and model.config == CONFIG


@FUZZ
@given(damaged())
@example(b"")
@example(b"\xff\xfe{}")  # not UTF-8: an unnamed UnicodeDecodeError
@example(b"[]")
@example(json.dumps({**GOOD, "in_channels": "1"}).encode())  # TypeError from the config's check
@example(json.dumps({**GOOD, "in_channels": 1.0}).encode())  # a float where an int belongs
@example(json.dumps({**GOOD, "mid_attention": 1}).encode())  # an int where a bool belongs
@example(json.dumps({**GOOD, "dropout": float("nan")}).encode())  # NaN: no setting
@example(json.dumps({**GOOD, "channels": ["8"]}).encode())
@example(json.dumps({**GOOD, "norm_groups": True}).encode())  # True is 1 to Python
def test_a_damaged_config_gives_a_named_error_or_its_model(model_dir, data):
    (model_dir / "config.json").write_bytes(data)
    model = _load(model_dir)
    if model is not None:  # only a config that states the saved model's shape may load
        fields = {f.name: getattr(model.config, f.name) for f in dataclasses.fields(UNetConfig)}
        for name, value in fields.items():
            default = getattr(CONFIG, name)
            assert type(value) is type(default) or value is None or default is None, name
            assert not isinstance(value, float) or math.isfinite(value), name


@pytest.mark.parametrize("other", OTHERS, ids=lambda c: c["_class"].split(".")[0])
def test_another_models_config_gives_a_named_error(model_dir, other):
    (model_dir / "config.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="config.json"):
        from_pretrained(UNet, model_dir)
