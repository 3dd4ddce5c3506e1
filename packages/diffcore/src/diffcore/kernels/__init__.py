"""Fused kernels, each beside the PyTorch reference that specifies it: the sampler update (with
an optional classifier-free guidance combine), GroupNorm + modulation + SiLU, and masked-token
sampling.

Layout: ``kernels/<op>/reference.py`` (the spec and the CPU path), ``kernels/<op>/triton.py``
(the Triton kernel, imported lazily: importing diffcore never imports triton) and
``kernels/<op>/__init__.py`` (checks the inputs and dispatches). Which one runs is chosen per
call by :func:`backend_for`: Triton for CUDA tensors when it imports, the reference elsewhere;
override with ``use_backend("reference" | "triton" | "compiled" | "auto")`` or
``DIFFCORE_KERNELS=...``; "compiled" runs the reference through ``torch.compile`` (the fused
CPU path, C++ from inductor). ``TRITON_INTERPRET=1`` lets a forced "triton" run on
CPU tensors through Triton's interpreter (how the tests check the kernels without a GPU).
"""

from diffcore.kernels._dispatch import (
    BACKENDS,
    backend_for,
    requested_backend,
    triton_available,
    use_backend,
)
from diffcore.kernels.group_norm_silu import group_norm_silu
from diffcore.kernels.sampler_update import guided_sampler_update, sampler_update
from diffcore.kernels.token_sampling import sample_tokens

__all__ = [
    "BACKENDS",
    "backend_for",
    "group_norm_silu",
    "guided_sampler_update",
    "requested_backend",
    "sample_tokens",
    "sampler_update",
    "triton_available",
    "use_backend",
]
