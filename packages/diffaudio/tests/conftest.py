"""One intra-op thread for diffaudio's tests: their tensors are tiny, and on a shared CPU two
OpenMP threads per process wait on each other (10x slower under load, same results)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
