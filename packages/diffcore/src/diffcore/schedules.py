"""Noise schedules in continuous time, and the noise-level grids samplers walk along.

Every Gaussian schedule is one monotone function: the log signal-to-noise ratio
``logsnr(t)`` for t in [0, 1] (t = 0 clean, t = 1 pure noise). From it follow the
variance-preserving pair ``alpha = sqrt(sigmoid(logsnr))``, ``sigma = sqrt(sigmoid(-logsnr))``
(``x_t = alpha * x0 + sigma * eps``) and the variance-exploding noise level
``sigma_ve = exp(-logsnr / 2) = sigma / alpha`` (``x = x0 + sigma_ve * eps``), which is the
coordinate samplers and denoisers work in (Karras et al. 2022, https://arxiv.org/abs/2206.00364).

Each schedule also inverts its own map in closed form (``t_of_logsnr``), so a network trained on
time t can be driven by a sampler that only knows noise levels.

A sampling *grid* is a plain 1-D float64 tensor of variance-exploding noise levels, strictly
decreasing, ending with an exact 0: ``uniform_grid``, ``trailing_grid``, ``karras_grid``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "NoiseSchedule",
    "LinearSchedule",
    "CosineSchedule",
    "SigmoidSchedule",
    "KarrasSchedule",
    "FlowSchedule",
    "alpha_sigma",
    "logsnr_to_sigma",
    "sigma_to_logsnr",
    "uniform_grid",
    "trailing_grid",
    "karras_grid",
]


def alpha_sigma(logsnr: Tensor) -> tuple[Tensor, Tensor]:
    """Variance-preserving (alpha, sigma) with alpha^2 + sigma^2 = 1 from log-SNR."""
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


def logsnr_to_sigma(logsnr: Tensor) -> Tensor:
    """Variance-exploding noise level ``sigma = exp(-logsnr / 2)``."""
    return torch.exp(-0.5 * logsnr)


def sigma_to_logsnr(sigma: Tensor) -> Tensor:
    """Inverse of :func:`logsnr_to_sigma`: ``logsnr = -2 log sigma``."""
    return -2.0 * torch.log(sigma)


def _as_time(t: Tensor | float) -> Tensor:
    t = torch.as_tensor(t, dtype=torch.float64)
    if torch.any((t < 0) | (t > 1)):
        raise ValueError(f"diffusion time must lie in [0, 1], got values in [{t.min()}, {t.max()}]")
    return t


class NoiseSchedule:
    """Base of the Gaussian schedules: subclasses define ``_logsnr`` and ``_time``."""

    def logsnr(self, t: Tensor | float) -> Tensor:
        """log(alpha^2 / sigma^2) at time t in [0, 1] (decreasing in t), float64."""
        return self._logsnr(_as_time(t))

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        """The time at which the schedule reaches ``logsnr`` (clipped into [0, 1])."""
        return self._time(torch.as_tensor(logsnr, dtype=torch.float64)).clamp(0.0, 1.0)

    def sigma(self, t: Tensor | float) -> Tensor:
        """Variance-exploding noise level at time t."""
        return logsnr_to_sigma(self.logsnr(t))

    def t_of_sigma(self, sigma: Tensor) -> Tensor:
        """The time at which the schedule reaches the variance-exploding level ``sigma``."""
        return self.t_of_logsnr(sigma_to_logsnr(torch.as_tensor(sigma, dtype=torch.float64)))

    @property
    def sigma_max(self) -> float:
        """Noise level at t = 1, where sampling starts."""
        return float(self.sigma(1.0))

    def _logsnr(self, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} must define _logsnr(t)")

    def _time(self, logsnr: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} must define _time(logsnr)")


@dataclass(frozen=True)
class LinearSchedule(NoiseSchedule):
    """DDPM's linear beta schedule in continuous time (Song et al. 2021, VP-SDE):
    ``-log alpha_bar(t) = beta_min t + (beta_max - beta_min) t^2 / 2``. The defaults match
    DDPM's 1000 steps of beta from 1e-4 to 0.02."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def _logsnr(self, t: Tensor) -> Tensor:
        neg_log_abar = self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2
        return -torch.log(torch.expm1(neg_log_abar))

    def _time(self, logsnr: Tensor) -> Tensor:
        g = torch.nn.functional.softplus(-logsnr)  # -log alpha_bar
        slope = self.beta_max - self.beta_min
        return (torch.sqrt(self.beta_min**2 + 2.0 * slope * g) - self.beta_min) / slope


@dataclass(frozen=True)
class CosineSchedule(NoiseSchedule):
    """Cosine schedule ``logsnr = -2 log tan(pi u / 2)`` (Nichol & Dhariwal 2021), with t mapped
    onto u so that logsnr spans [logsnr_min, logsnr_max], then shifted by ``shift``
    (``2 log(64 / resolution)`` for high resolutions; Hoogeboom et al. 2023)."""

    logsnr_min: float = -10.0
    logsnr_max: float = 10.0
    shift: float = 0.0

    def _u_range(self) -> tuple[float, float]:
        u_min = 2.0 / math.pi * math.atan(math.exp(-0.5 * self.logsnr_max))
        u_max = 2.0 / math.pi * math.atan(math.exp(-0.5 * self.logsnr_min))
        return u_min, u_max

    def _logsnr(self, t: Tensor) -> Tensor:
        u_min, u_max = self._u_range()
        u = u_min + t * (u_max - u_min)
        return -2.0 * torch.log(torch.tan(0.5 * math.pi * u)) + self.shift

    def _time(self, logsnr: Tensor) -> Tensor:
        u_min, u_max = self._u_range()
        u = 2.0 / math.pi * torch.atan(torch.exp(-0.5 * (logsnr - self.shift)))
        return (u - u_min) / (u_max - u_min)


@dataclass(frozen=True)
class SigmoidSchedule(NoiseSchedule):
    """Sigmoid schedule (Jabri et al. 2022; Chen 2023, https://arxiv.org/abs/2301.10972):
    ``alpha_bar(t)`` follows a rescaled sigmoid between ``start`` and ``end`` with temperature
    ``tau``; log-SNR is clipped to [logsnr_min, logsnr_max] because alpha_bar hits 0 and 1."""

    start: float = -3.0
    end: float = 3.0
    tau: float = 1.0
    logsnr_min: float = -10.0
    logsnr_max: float = 10.0

    def _ends(self) -> tuple[float, float]:
        sig = lambda v: 1.0 / (1.0 + math.exp(-v))
        return sig(self.start / self.tau), sig(self.end / self.tau)

    def _logsnr(self, t: Tensor) -> Tensor:
        v_start, v_end = self._ends()
        s = torch.sigmoid((t * (self.end - self.start) + self.start) / self.tau)
        alpha_bar = (v_end - s) / (v_end - v_start)
        logsnr = torch.logit(alpha_bar.clamp(1e-30, 1.0 - 1e-16))
        return logsnr.clamp(self.logsnr_min, self.logsnr_max)

    def _time(self, logsnr: Tensor) -> Tensor:
        v_start, v_end = self._ends()
        s = v_end - torch.sigmoid(logsnr) * (v_end - v_start)
        return (self.tau * torch.logit(s) - self.start) / (self.end - self.start)


@dataclass(frozen=True)
class KarrasSchedule(NoiseSchedule):
    """EDM's noise levels as a schedule (Karras et al. 2022): ``sigma(t)^(1/rho)`` is linear in t,
    from ``sigma_min`` at t = 0 to ``sigma_max`` at t = 1."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0  # shadows NoiseSchedule.sigma_max with the same value
    rho: float = 7.0

    def _logsnr(self, t: Tensor) -> Tensor:
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return sigma_to_logsnr((lo + t * (hi - lo)) ** self.rho)

    def _time(self, logsnr: Tensor) -> Tensor:
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return (logsnr_to_sigma(logsnr) ** (1 / self.rho) - lo) / (hi - lo)


@dataclass(frozen=True)
class FlowSchedule(NoiseSchedule):
    """Flow matching's straight path ``x_t = (1 - t) x0 + t eps`` (Lipman et al. 2023,
    https://arxiv.org/abs/2210.02747; Liu et al. 2023, rectified flow) as a schedule:
    ``logsnr = 2 log((1 - t) / t)``, so the variance-exploding level is ``sigma = t / (1 - t)``
    and ``x_t = x / (1 + sigma)`` for ``x = x0 + sigma * eps``. Both ends are infinite in
    log-SNR, so t is clipped into [t_min, t_max]: sampling starts at sigma = t_max / (1 - t_max)."""

    t_min: float = 1e-5
    t_max: float = 0.999

    def __post_init__(self) -> None:
        if not 0.0 < self.t_min < self.t_max < 1.0:
            raise ValueError(f"need 0 < t_min < t_max < 1, got {self.t_min} and {self.t_max}")

    def _logsnr(self, t: Tensor) -> Tensor:
        t = t.clamp(self.t_min, self.t_max)
        return 2.0 * (torch.log1p(-t) - torch.log(t))

    def _time(self, logsnr: Tensor) -> Tensor:
        return torch.sigmoid(-0.5 * logsnr)


def _check_steps(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"a grid needs a positive integer number of steps, got {n!r}")


def _with_final_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def uniform_grid(schedule: NoiseSchedule, n: int, *, t_min: float = 1e-3) -> Tensor:
    """n noise levels at times evenly spaced from 1 down to ``t_min``, then 0 (diffusers'
    "linspace" spacing): the last network call sees almost clean data. Shape (n + 1,)."""
    _check_steps(n)
    if not 0.0 < t_min < 1.0:
        raise ValueError(f"t_min must lie in (0, 1), got {t_min}")
    t = torch.linspace(1.0, t_min, n, dtype=torch.float64)
    return _with_final_zero(schedule.sigma(t))


def trailing_grid(schedule: NoiseSchedule, n: int) -> Tensor:
    """n noise levels at times 1, 1 - 1/n, ..., 1/n, then 0 ("trailing" spacing of Lin et al.
    2023, https://arxiv.org/abs/2305.08891): always starts at the schedule's full noise. Shape (n + 1,)."""
    _check_steps(n)
    t = torch.arange(n, 0, -1, dtype=torch.float64) / n
    return _with_final_zero(schedule.sigma(t))


def karras_grid(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. (2022) eq. 5: n levels with sigma^(1/rho) evenly spaced from sigma_max to
    sigma_min, then 0. Shape (n + 1,)."""
    _check_steps(n)
    if not 0.0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    ramp = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _with_final_zero((hi + ramp * (lo - hi)) ** rho)
