"""The fused sampler update every continuous sampler's step is made of:
``a * x + b * denoised + c * noise + d * prev`` (one read of each input, one write).

DDPM, DDIM, Euler, Euler-ancestral, Heun and DPM-Solver++(2M) all step by a linear combination
of the current state, the denoiser's estimate, fresh noise and at most one earlier estimate
(Karras et al. 2022, arXiv:2206.00364, Alg. 1-2; Lu et al. 2022, arXiv:2211.01095, Alg. 2), so
one memory-bound kernel serves them all. :func:`guided_sampler_update` folds classifier-free
guidance (Ho & Salimans 2022, https://arxiv.org/abs/2207.12598) into the same pass: it takes the
conditional and unconditional estimates instead of one denoised estimate.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from diffcore.kernels._dispatch import backend_for
from diffcore.kernels.sampler_update import reference

__all__ = ["guided_sampler_update", "sampler_update"]

# The Triton kernel computes in fp32; float64 always takes the (float64) reference.
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _check_tensor(op: str, name: str, t: Tensor | None, x: Tensor) -> None:
    if t is None:
        return
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.shape != x.shape or t.dtype != x.dtype or t.device != x.device:
        raise ValueError(
            f"{op}: {name} must match x in shape, dtype and device; got "
            f"{tuple(t.shape)} {t.dtype} on {t.device}, x is {tuple(x.shape)} {x.dtype} on {x.device}"
        )


def _check_coefficient(
    op: str, name: str, value: object, tensor: Tensor | None, tensor_name: str
) -> None:
    # Tensors are refused on purpose: a CUDA scalar would force a device sync per step.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a Python float, got {type(value).__name__}")
    if tensor is None and value != 0:
        raise ValueError(
            f"{op}: {name}={value} multiplies {tensor_name}, but {tensor_name} is None; "
            f"pass {tensor_name} or leave {name} at 0"
        )


def _check_update(
    op: str,
    x: Tensor,
    estimates: dict[str, Tensor],
    a: float,
    b: float,
    noise: Tensor | None,
    c: float,
    prev: Tensor | None,
    d: float,
) -> None:
    """The checks both forms share; ``estimates`` names the denoised estimate(s) b multiplies."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{op}: x must have a floating dtype, got {x.dtype}")
    for name, estimate in estimates.items():
        if estimate is None:
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got None")
        _check_tensor(op, name, estimate, x)
    _check_tensor(op, "noise", noise, x)
    _check_tensor(op, "prev", prev, x)
    _check_coefficient(op, "a", a, x, "x")
    _check_coefficient(op, "b", b, x, " and ".join(estimates))
    _check_coefficient(op, "c", c, noise, "noise")
    _check_coefficient(op, "d", d, prev, "prev")


def sampler_update(
    x: Tensor,
    denoised: Tensor,
    a: float,
    b: float,
    *,
    noise: Tensor | None = None,
    c: float = 0.0,
    prev: Tensor | None = None,
    d: float = 0.0,
) -> Tensor:
    """``a * x + b * denoised + c * noise + d * prev``, summed in fp32, returned in x's dtype.

    x, denoised, noise, prev: tensors of any one shape, floating dtype and device (noise and
    prev optional); a, b, c, d: Python floats (c / d must stay 0 without noise / prev).
    float64 inputs are summed in float64. The backend is chosen by
    :func:`diffcore.kernels.backend_for`: Triton on CUDA, the PyTorch reference elsewhere, the
    reference compiled when "compiled" is requested, a C++ loop on CPU when "cpp" is.
    """
    _check_update("sampler_update", x, {"denoised": denoised}, a, b, noise, c, prev, d)
    backend = backend_for(x)
    if backend == "triton" and x.dtype in _TRITON_DTYPES:
        from diffcore.kernels.sampler_update import triton as fused  # lazy: imports triton

        return fused.sampler_update(x, denoised, a, b, noise=noise, c=c, prev=prev, d=d)
    if backend == "compiled":
        from diffcore.kernels.sampler_update import compiled

        return compiled.sampler_update(x, denoised, a, b, noise=noise, c=c, prev=prev, d=d)
    if backend == "cpp":
        from diffcore.kernels.sampler_update import cpp

        return cpp.sampler_update(x, denoised, a, b, noise=noise, c=c, prev=prev, d=d)
    return reference.sampler_update(x, denoised, a, b, noise=noise, c=c, prev=prev, d=d)


def guided_sampler_update(
    x: Tensor,
    cond: Tensor,
    uncond: Tensor,
    guidance_scale: float,
    a: float,
    b: float,
    *,
    noise: Tensor | None = None,
    c: float = 0.0,
    prev: Tensor | None = None,
    d: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """The update with classifier-free guidance folded in, in one pass over memory:
    ``denoised = uncond + guidance_scale * (cond - uncond)`` (rounded as ``torch.lerp``, the
    combine of :class:`diffcore.denoisers.ClassifierFreeGuidance`), then
    ``a * x + b * denoised + c * noise + d * prev``; all in fp32 (fp64 stays fp64).

    x, cond, uncond, noise, prev: tensors of one shape, floating dtype and device;
    guidance_scale, a, b, c, d: Python floats. Returns (update, denoised), each in x's dtype:
    samplers hand denoised to callbacks and multistep solvers keep it as the next ``prev``.
    Unlike the guidance wrapper, whose combine is rounded to the storage dtype, the combine
    here enters the update unrounded.
    """
    op = "guided_sampler_update"
    _check_update(op, x, {"cond": cond, "uncond": uncond}, a, b, noise, c, prev, d)
    _check_coefficient(op, "guidance_scale", guidance_scale, x, "x")
    backend = backend_for(x)
    if backend == "triton" and x.dtype in _TRITON_DTYPES:
        from diffcore.kernels.sampler_update import triton as fused  # lazy: imports triton

        return fused.guided_sampler_update(
            x, cond, uncond, guidance_scale, a, b, noise=noise, c=c, prev=prev, d=d
        )
    if backend == "compiled":
        from diffcore.kernels.sampler_update import compiled

        return compiled.guided_sampler_update(
            x, cond, uncond, guidance_scale, a, b, noise=noise, c=c, prev=prev, d=d
        )
    if backend == "cpp":
        from diffcore.kernels.sampler_update import cpp

        return cpp.guided_sampler_update(
            x, cond, uncond, guidance_scale, a, b, noise=noise, c=c, prev=prev, d=d
        )
    return reference.guided_sampler_update(
        x, cond, uncond, guidance_scale, a, b, noise=noise, c=c, prev=prev, d=d
    )
