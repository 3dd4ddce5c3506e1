"""Refinement sampling for degradation processes (cold diffusion).

``sample_refine`` shares the signature of every sampler in the project; the "denoiser" is a
``Restorer`` ``R(x_t, t) -> x0 estimate`` and the schedule a grid of severities in [0, 1]
(``diffcore.processes.degradation``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from diffcore import seeding
from diffcore._utils import grid_levels, like
from diffcore.processes.degradation import Degradation, Restorer
from diffcore.samplers.step import Callback, Step

__all__ = ["sample_refine"]

Update = Literal["improved", "naive"]


@torch.no_grad()
def sample_refine(
    restorer: Restorer,
    x: Tensor,
    schedule: Tensor,
    /,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    degrade: Degradation,
    x_init: Tensor | None = None,
    t_start: float | None = None,
    known: Tensor | None = None,
    mask: Tensor | None = None,
    update: Update = "improved",
    noise_level: Callable[[float], float] | None = None,
) -> Tensor:
    """Restore, re-degrade to the next severity, repeat (Cold Diffusion, Bansal et al. 2022,
    https://arxiv.org/abs/2208.09392).

    restorer: ``R(x_t, t) -> x0 estimate`` (bind conditioning first, e.g. with
    ``diffcore.denoisers.condition``). x: (B, C, H, W) the starting, fully degraded image (for
    diversity draw it with ``DegradationProcess.corrupt``, whose noise then rides along).
    schedule: severities from high to low ending at 0. degrade: the process's ``D(x0, t)``.
    update: "improved" is Algorithm 2, ``x_s = x_t - D(x0_hat, t) + D(x0_hat, s)``, which only
    moves x_t by the change the restorer's estimate implies, so the restorer's errors largely
    cancel (exactly, for degradations of the form ``x + t * e``); "naive" is Algorithm 1,
    ``x_s = D(x0_hat, s)``. At s = 0 the degradation is the identity and is not called.
    x_init + t_start (img2img): run only the last ``t_start`` share of the steps, starting from
    ``degrade(x_init, level)`` at the level where that share begins; x then only sets the shape.
    known + mask (True where ``known`` holds): the estimate is replaced by ``known`` there, and
    after each step those entries are set to the degraded estimate ``D(x0_hat, s)``, so they stay
    consistent with the free part at every level and equal ``known`` exactly at the end.
    noise_level: the std of the Gaussian noise the process adds at a severity
    (``DegradationProcess.noise_at``). When it changes with severity the improved update scales
    the carried residual ``x_t - D(x0_hat, t)`` by ``noise_level(s) / noise_level(t)`` (for pure
    noise this is DDIM), and the naive update adds fresh noise of std ``noise_level(s)`` drawn
    from ``generator``; constant or None, both are as in the paper.
    callback(Step(i, total, t, s), x_s, x0_hat) after every step.
    """
    if update not in ("improved", "naive"):
        raise ValueError(f"update must be 'improved' or 'naive', got {update!r}")
    if not callable(degrade):
        raise TypeError(f"degrade must be a callable (x0, t) -> x_t, got {type(degrade).__name__}")
    levels = grid_levels(schedule, var="severity", upper=1.0)
    if (x_init is None) != (t_start is None):
        raise ValueError("x_init and t_start go together: pass both (img2img) or neither")
    if (known is None) != (mask is None):
        raise ValueError("known and mask go together: pass both (inpainting) or neither")

    def degrade_to(image: Tensor, level: float) -> Tensor:
        # D(., 0) is the identity by definition; skipping it keeps the final step exact.
        return image if level == 0.0 else degrade(image, image.new_full((len(image),), level))

    if t_start is not None:
        if not 0.0 < t_start <= 1.0:
            raise ValueError(f"t_start must lie in (0, 1], got {t_start}")
        steps = len(levels) - 1
        levels = levels[steps - max(1, round(t_start * steps)) :]
    if known is not None:
        known = like("known", known, x)
        mask = torch.as_tensor(mask, device=x.device).bool().expand_as(x)
    if x_init is not None:
        x_init = like("x_init", x_init, x)
        x = degrade_to(x_init if known is None else torch.where(mask, known, x_init), levels[0])
        if noise_level is not None and noise_level(levels[0]) > 0:  # as the restorer saw it
            eps = seeding.randn(x.shape, generator, device=x.device, dtype=x.dtype)
            x = x + noise_level(levels[0]) * eps
    elif known is not None:
        # The known entries start degraded together with their context, like everything after.
        x = torch.where(mask, degrade_to(torch.where(mask, known, x), levels[0]), x)

    total = len(levels) - 1
    for i in range(total):
        t, s = levels[i], levels[i + 1]
        x0_hat = restorer(x, x.new_full((len(x),), t))
        if known is not None:
            x0_hat = torch.where(mask, known, x0_hat)
        next_level = degrade_to(x0_hat, s)
        now, then = (1.0, 1.0) if noise_level is None else (noise_level(t), noise_level(s))
        if update == "naive":
            x = next_level
            if then > 0 and then != now:  # the restorer at s expects noise of std then
                x = x + then * seeding.randn(x.shape, generator, device=x.device, dtype=x.dtype)
        else:
            ratio = then / now if now > 0 else 1.0
            x = next_level + ratio * (x - degrade_to(x0_hat, t))
        if known is not None:
            x = torch.where(mask, next_level, x)
        if callback is not None:
            callback(Step(i, total, t, s), x, x0_hat)
    return x
