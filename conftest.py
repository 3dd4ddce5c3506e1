"""Fixtures shared by every package's tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def _data_root() -> Path:
    override = os.environ.get("DIFFUSION_SHARED_DATA")
    return Path(override) if override else ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets in ``../shared/data`` (Fashion-MNIST, FSDD, Tiny Shakespeare,
    proteins); tests that need them are skipped, with the reason, where they are absent.
    ``DIFFUSION_SHARED_DATA`` points elsewhere."""
    root = _data_root()
    if not root.is_dir():
        pytest.skip(f"real data sets not found at {root} (set DIFFUSION_SHARED_DATA)")
    return root
