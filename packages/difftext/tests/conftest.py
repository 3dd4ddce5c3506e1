"""Fixtures for difftext's tests: one CPU thread, a slice of Tiny Shakespeare, tiny models."""

from __future__ import annotations

import string

import pytest
import torch

from difftext.data import Document
from difftext.pipeline import TextPipeline
from difftext.tokenizer import train_char_tokenizer
from difftext.training import build_model


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and far faster than on two threads of a shared
    machine (OpenMP threads spin while they wait for each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shakespeare(shared_data) -> str:
    """The first 40,000 characters of Tiny Shakespeare, read as a user would."""
    from difftext.data import load_documents

    return load_documents(shared_data / "tinyshakespeare" / "input.txt")[0].text[:40_000]


@pytest.fixture(scope="session")
def char_tokenizer():
    """Characters of printable ASCII (no data needed)."""
    return train_char_tokenizer([string.printable])


@pytest.fixture
def tiny_diffusion(char_tokenizer):
    """An untrained tiny masked LM on 32-token blocks: the samplers' guarantees (fixed tokens,
    determinism) hold for any weights."""
    return build_model("diffusion", char_tokenizer, 32, preset="tiny", seed=0)


@pytest.fixture
def pipe(tiny_diffusion) -> TextPipeline:
    """The tiny masked LM ready to generate."""
    return TextPipeline(tiny_diffusion)


@pytest.fixture
def documents(shakespeare) -> list[Document]:
    return [Document(shakespeare, "tinyshakespeare/input.txt")]
