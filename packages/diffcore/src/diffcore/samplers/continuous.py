"""Samplers for continuous (Gaussian) diffusion: pure functions of a denoiser and a grid.

All share one signature::

    sample_<algo>(denoiser, x, sigmas, /, *, generator=None, callback=None,
                  x_init=None, t_start=None, known=None, mask=None, **algo_options) -> Tensor

- ``denoiser``: ``D(x, sigma) -> x0`` (bind conditioning with ``diffcore.denoisers.condition``).
- ``x``: (B, ...) standard normal noise; sampling starts from ``sigmas[0] * x``.
- ``sigmas``: 1-D grid of decreasing variance-exploding noise levels ending at 0
  (``diffcore.schedules.karras_grid`` and friends).
- ``x_init`` + ``t_start`` (img2img / SDEdit, Meng et al. 2021): start from ``x_init`` noised to the
  level where the last ``t_start`` share of the grid's steps begins (t_start = 1: all steps).
- ``known`` + ``mask`` (inpainting, infilling): where ``mask`` is True the sample is ``known``.
  Inside, the denoiser's estimate is replaced by ``known`` there, so the known entries follow
  exactly the path the same sampler would take for data equal to ``known``, and the unknown ones
  see consistently noised context at every level; the result equals ``known`` exactly there.
  This replacement method is fast but biased (the free part may commit to a mode before the known
  part is legible); ``diffcore.samplers.smc.sample_smc`` samples the exact conditional.
- ``callback(step, x, denoised)`` after every step; noise only from ``generator``.

Every step is one call of the fused update ``a*x + b*denoised + c*noise + d*prev``
(``diffcore.kernels.sampler_update``). Coefficients are Python floats computed from a CPU copy of
the grid, so no step waits on the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from diffcore import seeding
from diffcore._utils import grid_levels, like
from diffcore.denoisers.protocols import Denoiser
from diffcore.kernels.sampler_update import sampler_update
from diffcore.samplers.step import Callback, Step
from diffcore.seeding import Generator

__all__ = [
    "sample_ddpm",
    "sample_ddim",
    "sample_euler",
    "sample_euler_ancestral",
    "sample_heun",
    "sample_dpmpp_2m",
    "sample_dpmpp_3m",
    "sample_unipc",
]


class _Run:
    """What every continuous sampler sets up the same way: the grid as floats, the starting point,
    the inpainting wrapper, the callback and noise draws."""

    def __init__(
        self,
        denoiser: Denoiser,
        x: Tensor,
        sigmas: Tensor,
        generator: Generator,
        callback: Callback | None,
        x_init: Tensor | None,
        t_start: float | None,
        known: Tensor | None,
        mask: Tensor | None,
    ) -> None:
        levels = grid_levels(sigmas, var="sigma")
        if (x_init is None) != (t_start is None):
            raise ValueError("x_init and t_start go together: pass both (img2img) or neither")
        if t_start is not None:
            if not 0.0 < t_start <= 1.0:
                raise ValueError(f"t_start must lie in (0, 1], got {t_start}")
            steps = len(levels) - 1
            levels = levels[steps - max(1, round(t_start * steps)) :]
        if (known is None) != (mask is None):
            raise ValueError("known and mask go together: pass both (inpainting) or neither")
        base = torch.zeros_like(x) if x_init is None else like("x_init", x_init, x)
        if known is not None:
            known = like("known", known, x)
            mask = torch.as_tensor(mask, device=x.device).bool().expand_as(x)
            base = torch.where(mask, known, base)
            denoiser = _KeepKnown(denoiser, known, mask)
        self.denoiser, self.known, self.mask = denoiser, known, mask
        self.levels, self.generator, self.callback = levels, generator, callback
        self.x = base + levels[0] * x

    def steps(self) -> range:
        return range(len(self.levels) - 1)

    def denoise(self, x: Tensor, level: float) -> Tensor:
        return self.denoiser(x, x.new_full((x.shape[0],), level))

    def noise(self, x: Tensor) -> Tensor:
        return seeding.randn(x.shape, self.generator, device=x.device, dtype=x.dtype)

    def report(self, i: int, x: Tensor, denoised: Tensor) -> None:
        if self.callback is not None:
            total = len(self.levels) - 1
            self.callback(Step(i, total, self.levels[i], self.levels[i + 1]), x, denoised)

    def finish(self, x: Tensor) -> Tensor:
        return x if self.known is None else torch.where(self.mask, self.known, x)


class _KeepKnown:
    def __init__(self, denoiser: Denoiser, known: Tensor, mask: Tensor) -> None:
        self.denoiser, self.known, self.mask = denoiser, known, mask

    def __call__(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        return torch.where(self.mask, self.known, self.denoiser(x, sigma, **cond))


def ancestral_split(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """Split a step sigma -> sigma_next into a deterministic part down to ``sigma_down`` and fresh
    noise of std ``sigma_up`` (sigma_down^2 + sigma_up^2 = sigma_next^2). eta = 1 is the exact
    posterior q(x_next | x, x0) of the forward process (DDPM); eta = 0 is deterministic (DDIM)."""
    if sigma_next == 0.0:
        return 0.0, 0.0
    up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return math.sqrt(sigma_next**2 - up**2), up


def _ancestral_loop(run: _Run, eta: float) -> Tensor:
    x = run.x
    for i in run.steps():
        sigma, sigma_next = run.levels[i], run.levels[i + 1]
        denoised = run.denoise(x, sigma)
        down, up = ancestral_split(sigma, sigma_next, eta)
        ratio = down / sigma
        noise = run.noise(x) if up > 0 else None
        x = sampler_update(x, denoised, ratio, 1.0 - ratio, noise=noise, c=up)
        run.report(i, x, denoised)
    return run.finish(x)


@torch.no_grad()
def sample_ddim(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    /,
    *,
    generator: Generator = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    t_start: float | None = None,
    known: Tensor | None = None,
    mask: Tensor | None = None,
    eta: float = 0.0,
) -> Tensor:
    """DDIM (Song et al. 2020, https://arxiv.org/abs/2010.02502) with stochasticity ``eta``, in
    variance-exploding coordinates: move to ``sigma_down`` along the estimated noise direction,
    then add ``sigma_up`` fresh noise. eta = 0: deterministic DDIM; eta = 1: DDPM's posterior."""
    run = _Run(denoiser, x, sigmas, generator, callback, x_init, t_start, known, mask)
    return _ancestral_loop(run, eta)


@torch.no_grad()
def sample_ddpm(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    /,
    *,
    generator: Generator = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    t_start: float | None = None,
    known: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, https://arxiv.org/abs/2006.11239): every step draws
    from the forward process's posterior q(x_next | x, x0 = D(x)), i.e. DDIM with eta = 1."""
    run = _Run(denoiser, x, sigmas, generator, callback, x_init, t_start, known, mask)
    return _ancestral_loop(run, 1.0)


@torch.no_grad()
def sample_euler_ancestral(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    /,
    *,
    generator: Generator = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    t_start: float | None = None,
    known: Tensor | None = None,
    mask: Tensor | None = None,
    eta: float = 1.0,
) -> Tensor:
    """Euler-ancestral (k-diffusion): an Euler step of the probability-flow ODE down to
    ``sigma_down`` plus ``sigma_up`` fresh noise. In VE coordinates this is exactly DDIM(eta)."""
    run = _Run(denoiser, x, sigmas, generator, callback, x_init, t_start, known, mask)
    return _ancestral_loop(run, eta)


@torch.no_grad()
def sample_euler(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    /,
    *,
    generator: Generator = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    t_start: float | None = None,
    known: Tensor | None = None,
    mask: Tensor | None = None,
    churn: float = 0.0,
) -> Tensor:
    """Euler's method on the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma
    (Karras et al. 2022, https://arxiv.org/abs/2206.00364): the same steps as deterministic DDIM.

    ``churn`` > 0: Karras et al.'s stochastic sampler (their Algorithm 2, k-diffusion's
    ``s_churn``): before each step, fresh noise raises the level from sigma to
    sigma * (1 + gamma), gamma = min(churn / steps, sqrt(2) - 1), and the step starts there.
    The added noise corrects errors made by earlier steps, at the price of some detail."""
    if not churn >= 0.0:
        raise ValueError(f"churn must be >= 0 (0 = the deterministic ODE), got {churn}")
    run = _Run(denoiser, x, sigmas, generator, callback, x_init, t_start, known, mask)
    if churn == 0.0:
        return _ancestral_loop(run, 0.0)
    gamma = min(churn / len(run.steps()), math.sqrt(2.0) - 1.0)
    x = run.x
    for i in run.steps():
        sigma, sigma_next = run.levels[i], run.levels[i + 1]
        raised = sigma * (1.0 + gamma)
        x = sampler_update(x, x, 1.0, 0.0, noise=run.noise(x), c=math.sqrt(raised**2 - sigma**2))
        denoised = run.denoise(x, raised)
        ratio = sigma_next / raised
        x = sampler_update(x, denoised, ratio, 1.0 - ratio)
        run.report(i, x, denoised)
    return run.finish(x)


@torch.no_grad()
def sample_heun(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    /,
    *,
    generator: Generator = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    t_start: float | None = None,
    known: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 1 without churn): an Euler
    step, then the average of the slopes at both ends; the final step to sigma = 0 is plain Euler.
    Two network calls per step except the last."""
    run = _Run(denoiser, x, sigmas, generator, callback, x_init, t_start, known, mask)
    x = run.x
    for i in run.steps():
        sigma, sigma_next = run.levels[i], run.levels[i + 1]
        denoised = run.denoise(x, sigma)
        if sigma_next == 0.0:
            x = sampler_update(x, denoised, 0.0, 1.0)
        else:
            # x' = x + h/2 (d1 + d2) with d1 = (x - D1)/sigma, d2 = (x_euler - D2)/sigma_next,
            # x_euler = x + h d1, expanded into one linear combination of x, D1 and D2.
            h = sigma_next - sigma
            x_euler = sampler_update(x, denoised, sigma_next / sigma, 1.0 - sigma_next / sigma)
            denoised_2 = run.denoise(x_euler, sigma_next)
            b = h / (2 * sigma_next) - h / sigma
            x = sampler_update(
                x, denoised, sigma_next / sigma, b, prev=denoised_2, d=-h / (2 * sigma_next)
            )
        run.report(i, x, denoised)
    return run.finish(x)


@torch.no_grad()
def sample_dpmpp_2m(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    /,
    *,
    generator: Generator = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    t_start: float | None = None,
    known: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, https://arxiv.org/abs/2211.01095): a multistep
    second-order solver in log-sigma time that reuses the previous step's estimate, so it costs
    one network call per step."""
    run = _Run(denoiser, x, sigmas, generator, callback, x_init, t_start, known, mask)
    x = run.x
    old_denoised, h_last = None, None
    for i in run.steps():
        sigma, sigma_next = run.levels[i], run.levels[i + 1]
        denoised = run.denoise(x, sigma)
        if sigma_next == 0.0:
            x = sampler_update(x, denoised, 0.0, 1.0)
        else:
            h = math.log(sigma / sigma_next)
            phi = -math.expm1(-h)
            if old_denoised is None:
                x = sampler_update(x, denoised, sigma_next / sigma, phi)
            else:
                half_inv_r = h / (2 * h_last)  # 1 / (2 r) with r = h_last / h
                x = sampler_update(
                    x,
                    denoised,
                    sigma_next / sigma,
                    phi * (1 + half_inv_r),
                    prev=old_denoised,
                    d=-phi * half_inv_r,
                )
            old_denoised, h_last = denoised, h
        run.report(i, x, denoised)
    return run.finish(x)


def exponential_weights(h: float, nodes: list[float]) -> list[float]:
    """Weights ``w_k`` with ``sum_k w_k D(u_k) = int_0^h e^(u - h) P(u) du``, P the polynomial
    through the denoised estimates at ``nodes`` (log-sigma time ``u = -log sigma``, measured
    from the level the step starts at: 0 is the estimate there, -h1 the one before, h the
    level it goes to). One step of the data-prediction exponential integrator (DPM-Solver++,
    Lu et al. 2022) is then ``x_next = (sigma_next / sigma) x + sum_k w_k D_k``, exact when D is
    a polynomial of degree < len(nodes), on uneven grids too. ``h = log(sigma / sigma_next)``."""
    # moments m_j = int_0^h e^(u-h) (u/h)^j du; by parts m_j = 1 - j m_(j-1) / h
    moments = [-math.expm1(-h)]
    for j in range(1, len(nodes)):
        moments.append(1.0 - j * moments[-1] / h)
    # sum_k w_k (u_k / h)^j = m_j for every j: a small Vandermonde system in scaled nodes
    scaled = torch.tensor([u / h for u in nodes], dtype=torch.float64)
    powers = torch.arange(len(nodes), dtype=torch.float64)[:, None]
    rhs = torch.tensor(moments, dtype=torch.float64)
    return torch.linalg.solve(scaled[None, :] ** powers, rhs).tolist()


def _exponential_step(
    x: Tensor,
    sigma: float,
    sigma_next: float,
    points: list[tuple[Tensor, float]],
    damped: bool = False,
) -> Tensor:
    """``x`` at ``sigma`` carried to ``sigma_next`` through the polynomial in log-sigma time
    through ``points`` (denoised estimate, its -log sigma), newest first. ``damped``: with two
    points, DPM-Solver++(2M)'s slope ``c0 (D0 - D1) h / (2 h1)`` instead of the exact integral
    ``(h - c0) (D0 - D1) / h1``; both are second order, and the damped one extrapolates less
    over long steps (UniPC's predictor of order 2 takes it too)."""
    h, here = math.log(sigma / sigma_next), -math.log(sigma)
    if damped and len(points) == 2:
        c0, h1 = -math.expm1(-h), here - points[1][1]
        weights = [c0 * (1 + h / (2 * h1)), -c0 * h / (2 * h1)]
    else:
        weights = exponential_weights(h, [u - here for _, u in points])
    estimates = [d for d, _ in points]
    if len(estimates) == 1:
        return sampler_update(x, estimates[0], sigma_next / sigma, weights[0])
    prev = estimates[1]
    d = weights[1]
    if len(estimates) > 2:  # fold the older estimates into one before the fused update
        prev = sampler_update(estimates[1], estimates[2], weights[1], weights[2])
        for extra, w in zip(estimates[3:], weights[3:], strict=True):
            prev = sampler_update(prev, extra, 1.0, w)
        d = 1.0
    return sampler_update(x, estimates[0], sigma_next / sigma, weights[0], prev=prev, d=d)


SHORT_GRID = 15  # fewer steps than this: the last steps use lower orders (as diffusers does)


def _multistep(run: _Run, order: int, corrector: bool) -> Tensor:
    """The multistep exponential integrator through the last ``order`` estimates. With
    ``corrector``, each step is redone once the estimate at the level it reached is known,
    with that estimate as one more point (UniPC's corrector, Zhao et al. 2023): the next step
    starts from the corrected state but reuses the estimate, so a step still costs one call.

    On grids shorter than ``SHORT_GRID`` steps the order falls to the number of steps left
    ("lower order final", diffusers' default): the last steps of a short grid span several
    units of log-sigma, where extrapolating from earlier estimates overshoots."""
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    x, total = run.x, len(run.levels) - 1
    past: list[tuple[Tensor, float]] = []  # (denoised, -log sigma), newest first
    start: tuple[Tensor, float] | None = None  # where the last step started, for the corrector
    for i in run.steps():
        sigma, sigma_next = run.levels[i], run.levels[i + 1]
        denoised = run.denoise(x, sigma)
        point = (denoised, -math.log(sigma))
        if corrector and start is not None:
            x = _exponential_step(start[0], start[1], sigma, [point, *past][: order + 1])
        past = [point, *past][:order]
        if sigma_next == 0.0:
            x = sampler_update(x, denoised, 0.0, 1.0)
        else:
            start = (x, sigma)
            usable = total - 1 - i if total < SHORT_GRID else order  # steps before the last
            x = _exponential_step(x, sigma, sigma_next, past[: max(1, usable)], corrector)
        run.report(i, x, denoised)
    return run.finish(x)


def sample_dpmpp_3m(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    /,
    *,
    generator: Generator = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    t_start: float | None = None,
    known: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """DPM-Solver++(3M) (Lu et al. 2022, https://arxiv.org/abs/2211.01095): the multistep
    solver of third order, a quadratic through the last three denoised estimates in log-sigma
    time integrated exactly (:func:`exponential_weights`); one network call per step, first
    and second order on the first two steps."""
    run = _Run(denoiser, x, sigmas, generator, callback, x_init, t_start, known, mask)
    return _multistep(run, 3, corrector=False)


def sample_unipc(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    /,
    *,
    generator: Generator = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    t_start: float | None = None,
    known: Tensor | None = None,
    mask: Tensor | None = None,
    order: int = 2,
) -> Tensor:
    """UniPC (Zhao et al. 2023, https://arxiv.org/abs/2302.04867): a multistep predictor of
    ``order`` (1 to 3; of order 2 it is DPM-Solver++(2M), as in UniPC) and a corrector that
    uses the estimate at the predicted point, which the next step needs anyway, raising the
    order by one at no extra network call. The corrector integrates its interpolating
    polynomial exactly (:func:`exponential_weights`) where UniPC's B(h) variants approximate."""
    run = _Run(denoiser, x, sigmas, generator, callback, x_init, t_start, known, mask)
    return _multistep(run, order, corrector=True)


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_3m": sample_dpmpp_3m,
    "unipc": sample_unipc,
}
"""Continuous samplers by name (for command lines and studies)."""
