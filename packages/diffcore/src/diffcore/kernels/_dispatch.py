"""Choosing between a kernel's Triton version and its PyTorch reference."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

from torch import Tensor

BACKENDS = ("auto", "reference", "triton")
_forced: list[str] = []  # a stack, so nested use_backend() blocks restore correctly


@functools.cache
def triton_available() -> bool:
    """True when Triton imports (it ships with torch on Linux)."""
    try:
        import triton  # noqa: F401
    except Exception:  # a broken install must not break the reference path
        return False
    return True


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def requested_backend() -> str:
    """The backend asked for: the innermost ``use_backend`` block, else ``DIFFCORE_KERNELS``."""
    choice = _forced[-1] if _forced else os.environ.get("DIFFCORE_KERNELS", "auto")
    if choice not in BACKENDS:
        raise ValueError(f"DIFFCORE_KERNELS must be one of {BACKENDS}, got {choice!r}")
    return choice


def backend_for(x: Tensor) -> str:
    """ "triton" or "reference" for a call on tensor ``x``.

    auto: Triton on CUDA tensors when it imports, else the reference. Forcing "triton" on a CPU
    tensor needs ``TRITON_INTERPRET=1`` (Triton's interpreter), which is how the tests run it.
    """
    choice = requested_backend()
    if choice == "reference":
        return "reference"
    if choice == "auto":
        return "triton" if x.is_cuda and triton_available() else "reference"
    if not triton_available():
        raise RuntimeError("the triton kernel backend was requested but triton does not import")
    if not x.is_cuda and not _interpreting():
        raise RuntimeError(
            "the triton kernel backend runs on CUDA tensors; on the CPU set TRITON_INTERPRET=1 "
            "(before triton is imported) to use Triton's interpreter"
        )
    return "triton"


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force a backend inside a ``with`` block: "reference", "triton" or "auto"."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    _forced.append(name)
    try:
        yield
    finally:
        _forced.pop()
