"""Fused kernels, each beside the PyTorch reference that specifies it.

Layout: ``kernels/<op>/reference.py`` (the spec and the CPU path), ``kernels/<op>/triton.py``
(the Triton kernel, imported lazily) and ``kernels/<op>/__init__.py`` (dispatch). Which one runs
is chosen per call by :func:`backend_for`: Triton for CUDA tensors when it imports, the reference
elsewhere; override with ``use_backend(...)`` or ``DIFFCORE_KERNELS=reference|triton|auto``.
"""

from diffcore.kernels._dispatch import backend_for, triton_available, use_backend
from diffcore.kernels.sampler_update import sampler_update

__all__ = ["backend_for", "sampler_update", "triton_available", "use_backend"]
