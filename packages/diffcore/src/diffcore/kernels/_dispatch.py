"""Choosing between a kernel's Triton version, its PyTorch reference, the reference compiled,
and (for the sampler update) a hand-written C++ loop.

Every op in ``diffcore.kernels`` asks :func:`backend_for` once per call. The answer depends on
what was requested (innermost :func:`use_backend` block, else ``DIFFCORE_KERNELS``, else "auto")
and on the tensor: "auto" means Triton for CUDA tensors when Triton imports, the reference
otherwise, so a CPU-only or Triton-less install never touches Triton. "compiled" runs the
reference through ``torch.compile`` (inductor: one generated C++ loop on CPU), the fused path
where no hand-written kernel runs; it is opt-in because the first call of each op compiles
(seconds). "cpp" runs ops that have a C++ CPU loop (the sampler update) through it, built on
first use (tens of seconds, then cached), and every other op as "auto" would. Inside code that ``torch.compile`` is tracing, every op takes the reference, which
the enclosing compile fuses with its neighbours.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

BACKENDS = ("auto", "reference", "triton", "compiled", "cpp")
ENV_VAR = "DIFFCORE_KERNELS"

# A context variable rather than a global: nested blocks restore by token, and threads or
# asyncio tasks forcing different backends do not see each other's choice.
_forced: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "diffcore_kernels", default=None
)


@functools.cache
def triton_available() -> bool:
    """True when Triton imports (it ships with torch's Linux wheels). Cached after the first call."""
    try:
        import triton  # noqa: F401
    except Exception:  # a missing or broken install must leave the reference path working
        return False
    return True


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET`` asks Triton to run kernels in its CPU interpreter.

    Triton reads the variable when a kernel is decorated, so it must be set before the first
    Triton kernel module of diffcore is imported (in practice: before the process starts).
    """
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def requested_backend() -> str:
    """The backend asked for: the innermost ``use_backend`` block, else ``$DIFFCORE_KERNELS``,
    else "auto". The environment is read at every call, so it can be changed at run time."""
    forced = _forced.get()
    if forced is not None:
        return forced
    choice = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if choice not in BACKENDS:
        raise ValueError(f"{ENV_VAR} must be one of {', '.join(BACKENDS)}; got {choice!r}")
    return choice


def backend_for(x: Tensor) -> str:
    """Which implementation runs a call on ``x``: "triton", "compiled", "cpp" or "reference".

    auto: "triton" for CUDA tensors when Triton imports, else "reference".
    cpp: "cpp" for CPU tensors (ops without a C++ loop take the reference), else as auto.
    triton (forced): CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``; anything else
    raises RuntimeError rather than quietly running the reference.
    compiled: the reference through ``torch.compile``, on any device.
    While ``torch.compile`` traces the caller, always "reference".
    """
    if torch.compiler.is_compiling():
        return "reference"
    choice = requested_backend()
    if choice in ("reference", "compiled"):
        return choice
    if choice == "cpp" and x.device.type == "cpu":
        return "cpp"
    if choice in ("auto", "cpp"):
        return "triton" if x.is_cuda and triton_available() else "reference"
    if not triton_available():
        raise RuntimeError(
            f"the 'triton' kernel backend was requested (use_backend or {ENV_VAR}) but triton "
            "does not import here; install it or request 'auto' / 'reference'"
        )
    if x.is_cuda or (x.device.type == "cpu" and interpreting()):
        return "triton"
    raise RuntimeError(
        f"the 'triton' kernel backend runs on CUDA tensors, got a tensor on {x.device}; on the "
        "CPU set TRITON_INTERPRET=1 before starting Python to use Triton's interpreter, or "
        "request 'auto' / 'reference'"
    )


@functools.cache
def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` through ``torch.compile``, made once per function and kept. Shapes start static
    and turn dynamic when they change (torch's default), so a new batch size recompiles once."""
    return torch.compile(fn)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force a backend inside a ``with`` block: "reference", "triton", "compiled", "cpp" or
    "auto".

    Takes precedence over ``$DIFFCORE_KERNELS``; blocks nest, the innermost wins.
    """
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}")
    token = _forced.set(name)
    try:
        yield
    finally:
        _forced.reset(token)
