"""Masked-token sampling: logits -> temperature -> top-p -> Gumbel-max token and its confidence.

The step every masked-diffusion sampler takes at each masked position (MDLM, Sahoo et al. 2024,
https://arxiv.org/abs/2406.07524; MaskGIT / LLaDA confidence-ordered unmasking): draw a token
from softmax(logits / T) restricted to the top-p nucleus, and report how likely it was. The
Gumbel-max trick (argmax of ``logits / T + Gumbel``) draws exactly from that softmax without
computing it, which is what lets the Triton kernel stream over vocabularies of 50,000.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from diffcore.kernels._dispatch import backend_for
from diffcore.kernels.token_sampling import reference

__all__ = ["sample_tokens"]

# The kernel computes in the noise's precision and reads logits of any of these dtypes.
_TRITON_LOGITS = (torch.float16, torch.bfloat16, torch.float32)
_TRITON_NOISE = (torch.float32, torch.float64)


def _check(logits: Tensor, temperature: float, top_p: float | None, noise: Tensor | None) -> None:
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        kind = logits.dtype if isinstance(logits, Tensor) else type(logits).__name__
        raise TypeError(f"sample_tokens: logits must be a floating torch.Tensor, got {kind}")
    if logits.ndim < 1 or logits.shape[-1] == 0:
        raise ValueError(
            f"sample_tokens: logits must be (..., V) with V >= 1, got shape {tuple(logits.shape)}"
        )
    # Tensors are refused on purpose: a CUDA scalar would force a device sync per step.
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(
            f"sample_tokens: temperature must be a Python float, got {type(temperature).__name__}"
        )
    if not temperature >= 0.0:
        raise ValueError(f"sample_tokens: temperature must be >= 0 (0 = argmax), got {temperature}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"sample_tokens: top_p must lie in (0, 1], got {top_p}")
    if noise is None:
        return
    if not isinstance(noise, Tensor) or not noise.is_floating_point():
        kind = noise.dtype if isinstance(noise, Tensor) else type(noise).__name__
        raise TypeError(f"sample_tokens: noise must be a floating torch.Tensor, got {kind}")
    if noise.shape != logits.shape or noise.device != logits.device:
        raise ValueError(
            f"sample_tokens: noise must match logits in shape and device; got "
            f"{tuple(noise.shape)} on {noise.device}, logits are {tuple(logits.shape)} on "
            f"{logits.device}"
        )


def sample_tokens(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_p: float | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw one token per row of ``logits`` and report its probability.

    logits: (..., V) any floating dtype; temperature: Python float, 0 takes the argmax (no noise
    is drawn, confidence 1); top_p: keep the smallest set of most likely tokens whose mass
    reaches it (None: all). noise: (..., V) uniforms in [0, 1) to use; if None they are drawn
    here as ``torch.rand(logits.shape, generator=generator, dtype=torch.float64)`` on logits'
    device (float64 so the Gumbel tail is not truncated), so both backends see the same draw.

    Returns tokens (...,) int64 and confidence (...,) float32 (float64 for float64 logits): the
    chosen token's probability under the tempered, nucleus-filtered, renormalized distribution.
    The Triton kernel (CUDA; see ``triton.py`` for what it fuses) is chosen by
    :func:`diffcore.kernels.backend_for`; it makes the same choices as the float64 reference
    except where two perturbed scores tie to within float32 (float64 with float64 noise) rounding.
    """
    _check(logits, temperature, top_p, noise)
    if noise is not None and generator is not None:
        raise ValueError("sample_tokens: pass noise or generator, not both")
    if temperature == 0.0:
        tokens = logits.argmax(-1)
        return tokens, torch.ones(
            tokens.shape,
            dtype=torch.promote_types(logits.dtype, torch.float32),
            device=logits.device,
        )
    if noise is None:
        noise = torch.rand(
            logits.shape, generator=generator, device=logits.device, dtype=torch.float64
        )
    if (
        backend_for(logits) == "triton"
        and logits.dtype in _TRITON_LOGITS
        and noise.dtype in _TRITON_NOISE
    ):
        from diffcore.kernels.token_sampling import triton as fused  # lazy: imports triton

        return fused.sample_tokens(logits, noise, temperature=float(temperature), top_p=top_p)
    if backend_for(logits) == "compiled":
        from diffcore.kernels.token_sampling import compiled

        return compiled.sample_tokens(logits, noise, temperature=float(temperature), top_p=top_p)
    return reference.sample_tokens(logits, noise, temperature=float(temperature), top_p=top_p)
