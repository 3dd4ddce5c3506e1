"""Fuzzing the --model folder check of the kit: a damaged or missing config.json, a damaged
difftext.json and another domain's model give a DataError naming the folder, or the folder
when it holds the model the option expects, never another exception type.

Run with ``--hypothesis-show-statistics`` to see how many cases ran.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from diffuse.kit.errors import DataError
from diffuse.kit.paths import KINDS, MODELS, check_model_dir

FUZZ = settings(max_examples=300)  # deterministic: the root conftest's hypothesis profile
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=2)
    ),
    max_leaves=5,
)
# config.json as each domain writes it, and as transformers does for text models
CONFIGS = [{"_class": cls, "channels": [8]} for cls in KINDS if not cls.startswith("text.")] + [
    {"architectures": ["ModernBertForMaskedLM"], "model_type": "modernbert"},
    {"architectures": ["GPT2LMHeadModel", "GPT2ForCausalLM"], "model_type": "gpt2"},
    {"image_size": [28, 28]},
]


@st.composite
def config_text(draw: st.DrawFn) -> bytes:
    """A config.json with keys dropped or replaced, or cut, or bytes that are not UTF-8."""
    fields = dict(draw(st.sampled_from(CONFIGS)))
    for key in draw(
        st.lists(st.sampled_from(["_class", "architectures", "model_type"]), max_size=2)
    ):
        if draw(st.booleans()):
            fields.pop(key, None)
        else:
            fields[key] = draw(JSON_VALUES)
    data = json.dumps(fields).encode()
    if draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data)))] + draw(st.binary(max_size=3))
    return data


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "model"


@FUZZ
@given(
    st.sampled_from(sorted(MODELS)),
    config_text(),
    st.none() | JSON_VALUES.map(json.dumps).map(str.encode) | st.binary(max_size=8),
)
@example(("text", "--model"), json.dumps(CONFIGS[-3]).encode(), b"{")  # JSONDecodeError
@example(("text", "--model"), json.dumps(CONFIGS[-3]).encode(), b"[]")  # AttributeError
@example(("text", "--model"), b'{"architectures": 5}', None)  # TypeError: 5 is not iterable
@example(("text", "--model"), b'{"architectures": [5]}', None)  # AttributeError: int.endswith
@example(("text", "--model"), json.dumps(CONFIGS[-3]).encode(), b'{"kind": "image"}')  # text.image
def test_a_model_folder_is_the_expected_model_or_a_named_error(folder, use, config, meta):
    domain, option = use
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_bytes(config)
    (folder / "difftext.json").unlink(missing_ok=True)
    if meta is not None:
        (folder / "difftext.json").write_bytes(meta)
    try:
        found = check_model_dir(folder, domain, option=option)
    except DataError as err:
        assert str(folder) in str(err), f"the error does not name the folder: {err}"
        return
    data = json.loads(config)  # only a readable config of the expected kind passes
    expected = MODELS[domain, option]
    if isinstance(data.get("_class"), str):
        assert data["_class"] in ((expected,) if isinstance(expected, str) else expected)
    assert found == folder


@pytest.mark.parametrize("domain", ["image", "audio", "protein", "text"])
def test_a_folder_without_config_json_is_named(tmp_path, domain):
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 8)
    with pytest.raises(DataError, match=f"{tmp_path} has weights but no config.json"):
        check_model_dir(tmp_path, domain)
