"""Fixtures for diffprotein's tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Run the tiny test models on one thread: on a busy 2-core machine, two OpenMP threads
    that wait for each other make a 20k-parameter forward pass about 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
