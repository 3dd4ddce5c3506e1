"""GroupNorm + SiLU with the embedding's ``(1 + scale) * h + shift`` modulation in between: the
normalisation every U-Net residual block ends with (the ADM U-Net's adaptive GroupNorm,
Dhariwal & Nichol 2021, https://arxiv.org/abs/2105.05233).

Order: ``SiLU((1 + scale) * GroupNorm(x; weight, bias) + shift)``, the order of
:func:`diffcore.nn.group_norm_silu`, which calls this op.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from diffcore.kernels._dispatch import backend_for
from diffcore.kernels.group_norm_silu import reference

__all__ = ["group_norm_silu"]

# The Triton kernel computes in fp32; float64 always takes the (float64) reference.
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _check_tensor(name: str, t: Tensor | None, shape: tuple[int, ...], x: Tensor) -> None:
    if t is None:
        return
    if not isinstance(t, Tensor):
        raise TypeError(f"group_norm_silu: {name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != shape or t.device != x.device:
        raise ValueError(
            f"group_norm_silu: {name} must have shape {shape} on {x.device} for x of shape "
            f"{tuple(x.shape)}; got {tuple(t.shape)} on {t.device}"
        )


def _needs_autograd(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def group_norm_silu(
    x: Tensor,
    groups: int,
    weight: Tensor | None,
    bias: Tensor | None,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """``SiLU((1 + scale) * GroupNorm(x) + shift)``, the one normalisation every U-Net block uses.

    x: (N, C, *) (NCHW or channels-last); groups: divides C; weight, bias: (C,) affine
    parameters of the GroupNorm (or None); scale, shift: (N, C) per-sample modulation from the
    embedding (both or neither). Returns x's shape, dtype and (for dense x) memory layout.

    The Triton kernel (CUDA, chosen by :func:`diffcore.kernels.backend_for`) is forward-only:
    while autograd is recording and any input requires grad (training), the differentiable
    PyTorch reference runs instead, whatever backend was requested.
    """
    if (scale is None) != (shift is None):
        raise ValueError("group_norm_silu needs both scale and shift, or neither")
    if not isinstance(x, Tensor):
        raise TypeError(f"group_norm_silu: x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"group_norm_silu: x must be (N, C, *), got shape {tuple(x.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"group_norm_silu: groups must be a positive integer, got {groups!r}")
    n, channels = x.shape[:2]
    if channels % groups:
        raise ValueError(
            f"group_norm_silu: groups ({groups}) must divide the channel count ({channels})"
        )
    if x.numel() == groups:  # torch's group_norm refuses this; every backend does the same
        raise ValueError(
            f"group_norm_silu: expected more than one value per group, got x of shape "
            f"{tuple(x.shape)} with {groups} groups"
        )
    _check_tensor("weight", weight, (channels,), x)
    _check_tensor("bias", bias, (channels,), x)
    _check_tensor("scale", scale, (n, channels), x)
    _check_tensor("shift", shift, (n, channels), x)
    if (
        backend_for(x) == "triton"
        and x.dtype in _TRITON_DTYPES
        and not _needs_autograd(x, weight, bias, scale, shift)
    ):
        from diffcore.kernels.group_norm_silu import triton as fused  # lazy: imports triton

        return fused.group_norm_silu(x, int(groups), weight, bias, scale, shift, eps)
    if backend_for(x) == "compiled" and not _needs_autograd(x, weight, bias, scale, shift):
        from diffcore.kernels.group_norm_silu import compiled

        return compiled.group_norm_silu(x, int(groups), weight, bias, scale, shift, eps)
    return reference.group_norm_silu(x, groups, weight, bias, scale, shift, eps)
