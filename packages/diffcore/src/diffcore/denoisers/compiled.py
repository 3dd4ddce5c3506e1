"""A denoiser run through ``torch.compile``: the lean sampling loop.

Samplers spend their time calling the denoiser; at small batch that time is mostly Python and
kernel launches, not arithmetic. Compiling the whole denoiser (preconditioning, guidance,
clamping and the network together) removes both: inductor fuses the small ops (C++ on CPU,
Triton on CUDA), freezing folds the weights in as constants (on CPU: convolutions with
pre-packed oneDNN weights), and ``cuda_graphs=True`` replays each step as one CUDA graph. The sampler
loop itself stays eager: its coefficients are Python floats computed up front and its noise
comes from the caller's generator, so a compiled run repeats an eager one draw for draw and
no step waits on the device.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from diffcore.denoisers.protocols import Denoiser

__all__ = ["Compiled", "compiled"]


class Compiled:
    """``denoiser`` through ``torch.compile``; the same outputs up to floating-point
    reassociation (fp32: about 1e-6 relative).

    freeze: fold the weights into the compiled program (inductor's freezing). Fastest for
    sampling, but the program keeps the weights it saw first: compile again after training.
    cuda_graphs: replay CUDA graphs (``mode="reduce-overhead"``); helps most at small batch.
    Outputs then live in a pool the next replay overwrites, so each is copied out (samplers keep
    estimates across steps). dynamic=False: one specialised program per input shape.
    The first call per shape compiles (seconds to a minute); later calls reuse it.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        *,
        freeze: bool = True,
        cuda_graphs: bool = False,
        dynamic: bool = False,
    ) -> None:
        self.denoiser, self.cuda_graphs = denoiser, cuda_graphs
        options = {"freezing": freeze, "triton.cudagraphs": cuda_graphs}
        self._fn = torch.compile(denoiser.__call__, options=options, dynamic=dynamic)

    def __call__(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        if self.cuda_graphs and x.is_cuda:
            torch.compiler.cudagraph_mark_step_begin()
            return self._fn(x, sigma, **cond).clone()
        return self._fn(x, sigma, **cond)


def compiled(
    denoiser: Denoiser, *, freeze: bool = True, cuda_graphs: bool = False, dynamic: bool = False
) -> Compiled:
    """Compile ``denoiser`` for sampling (see :class:`Compiled` for the options)."""
    return Compiled(denoiser, freeze=freeze, cuda_graphs=cuda_graphs, dynamic=dynamic)
