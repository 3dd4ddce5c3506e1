"""The fused sampler update every continuous sampler's step is made of:
``a * x + b * denoised + c * noise + d * prev`` (one read of each input, one write).

DDPM, DDIM, Euler, Euler-ancestral, Heun and DPM-Solver++(2M) all step by a linear combination
of the current state, the denoiser's estimate, fresh noise and at most one earlier estimate
(Karras et al. 2022, arXiv:2206.00364, Alg. 1-2; Lu et al. 2022, arXiv:2211.01095, Alg. 2), so
one memory-bound kernel serves them all.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from diffcore.kernels._dispatch import backend_for
from diffcore.kernels.sampler_update import reference

__all__ = ["sampler_update"]

# The Triton kernel computes in fp32; float64 always takes the (float64) reference.
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _check_tensor(name: str, t: Tensor | None, x: Tensor) -> None:
    if t is None:
        return
    if not isinstance(t, Tensor):
        raise TypeError(f"sampler_update: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.shape != x.shape or t.dtype != x.dtype or t.device != x.device:
        raise ValueError(
            f"sampler_update: {name} must match x in shape, dtype and device; got "
            f"{tuple(t.shape)} {t.dtype} on {t.device}, x is {tuple(x.shape)} {x.dtype} on {x.device}"
        )


def _check_coefficient(name: str, value: object, tensor: Tensor | None, tensor_name: str) -> None:
    # Tensors are refused on purpose: a CUDA scalar would force a device sync per step.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"sampler_update: {name} must be a Python float, got {type(value).__name__}"
        )
    if tensor is None and value != 0:
        raise ValueError(
            f"sampler_update: {name}={value} multiplies {tensor_name}, but {tensor_name} is None; "
            f"pass {tensor_name} or leave {name} at 0"
        )


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
    :func:`diffcore.kernels.backend_for`: Triton on CUDA, the PyTorch reference elsewhere.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"sampler_update: x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"sampler_update: x must have a floating dtype, got {x.dtype}")
    if denoised is None:
        raise TypeError("sampler_update: denoised must be a torch.Tensor, got None")
    _check_tensor("denoised", denoised, x)
    _check_tensor("noise", noise, x)
    _check_tensor("prev", prev, x)
    _check_coefficient("a", a, x, "x")
    _check_coefficient("b", b, denoised, "denoised")
    _check_coefficient("c", c, noise, "noise")
    _check_coefficient("d", d, prev, "prev")
    if backend_for(x) == "triton" and x.dtype in _TRITON_DTYPES:
        from diffcore.kernels.sampler_update import triton as fused  # lazy: imports triton

        return fused.sampler_update(x, denoised, a, b, noise=noise, c=c, prev=prev, d=d)
    return reference.sampler_update(x, denoised, a, b, noise=noise, c=c, prev=prev, d=d)
