"""Fuzzing the text file readers: binary, empty, non-UTF-8 and BOM-prefixed files give a
ValueError naming the file or exactly the text they hold, never another exception type, a
hang or a wrong text.

The seed corpus is made here. Run with ``--hypothesis-show-statistics`` to see how many cases ran.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from difftext.data import load_documents, read_texts, write_jsonl

FUZZ = settings(max_examples=200)  # deterministic: the root conftest's hypothesis profile
BOM = codecs.BOM_UTF8


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(st.lists(st.text(), min_size=1, max_size=4))
@example(["a\u2028b"])  # JSON keeps U+2028 raw; str.splitlines() cut the line there
@example(["\x1c", "\x85"])  # more of splitlines()' line ends
def test_texts_written_as_jsonl_read_back_the_same(folder, texts):
    path = write_jsonl([{"text": t} for t in texts], folder / "samples.jsonl")
    assert read_texts(path, jsonl_only=True) == texts


@FUZZ
@given(
    st.sampled_from(["texts.jsonl", "texts.txt"]),
    st.binary(max_size=40)
    | st.text(max_size=40).map(str.encode)
    | st.sampled_from([b'{"text": 5}', b'{"text": null}', b"[1]", b'"text"', b"\x89PNG\r\n\x1a\n"]),
    st.booleans(),
)
@example("texts.jsonl", b'{"text": "a"}', True)  # a BOM before the first object
@example("texts.txt", b"caf\xe9", False)  # Latin-1: an unnamed UnicodeDecodeError
@example("texts.jsonl", b'{"text": 5}', False)  # a number returned as a text
def test_any_bytes_give_texts_or_a_named_error(folder, name, data, bom):
    path = folder / name
    path.write_bytes(BOM + data if bom else data)
    try:
        texts = read_texts(path)
    except ValueError as err:
        assert str(path) in str(err), f"the error does not name the file: {err}"
        return
    assert all(isinstance(t, str) and "\ufeff" not in t[:1] for t in texts)
    if name.endswith(".txt"):
        lines = data.decode().replace("\r\n", "\n").replace("\r", "\n").split("\n")
        assert texts == [line for line in lines if line.strip()]


# Documents go through `datasets` (a cache entry per file), so fewer cases.
@settings(FUZZ, max_examples=40)
@given(
    st.text(max_size=30).map(str.encode)
    | st.binary(max_size=30)
    | st.sampled_from([b"", b" \n\t", b"\x00\x00\x00", b"ab\x00cd"]),
    st.booleans(),
)
@example(b"hello\r\nworld\r", True)  # a BOM was read as the text's first letter
@example(b"\x00" * 16, False)  # valid UTF-8, but binary: read as a text of NULs
def test_a_text_file_gives_its_text_or_a_named_error(folder, data, bom):
    path = folder / "doc.txt"
    path.write_bytes(BOM + data if bom else data)
    try:
        docs = load_documents(path)
    except ValueError as err:
        assert str(path) in str(err), f"the error does not name the file: {err}"
        return
    text = data.decode("utf-8")  # anything else must have been refused
    assert "\x00" not in text
    assert [d.text for d in docs] == [text.replace("\r\n", "\n").replace("\r", "\n")]
