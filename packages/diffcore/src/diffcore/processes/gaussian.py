"""Gaussian diffusion: corrupt continuous data with noise, and the loss that teaches undoing it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from diffcore._utils import per_sample, stratified_time
from diffcore.denoisers.network import PREDICTIONS, NetworkDenoiser, Prediction, preconditioning
from diffcore.schedules import (
    CosineSchedule,
    FlowSchedule,
    LinearSchedule,
    NoiseSchedule,
    alpha_sigma,
)

Weighting = Literal["uniform", "min_snr", "snr_plus_one"]
WEIGHTINGS: tuple[str, ...] = ("uniform", "min_snr", "snr_plus_one")
TimeSampling = Literal["uniform", "logit_normal"]
TIME_SAMPLINGS: tuple[str, ...] = ("uniform", "logit_normal")


@dataclass(frozen=True)
class GaussianProcess:
    """``x_t = alpha(t) * x0 + sigma(t) * eps`` with the schedule's variance-preserving pair.

    prediction: what the network outputs — "eps", "x0", "v" (Salimans & Ho 2022) or "edm"
    (Karras et al. 2022 preconditioning with ``sigma_data``). The network is called as
    ``net(x_t, t, **cond)`` with t (B,) in [t_min, 1].

    weighting: the loss weight as a function of SNR, expressed on the x0 error
    ``|D(x_t) - x0|^2`` so that it means the same for every prediction type:
    "uniform" = plain MSE on the network's own target (x0 weight 1/c_out^2: SNR for eps,
    1 for x0, SNR+1 for v); "min_snr" = min(SNR, gamma) (Hang et al. 2023,
    https://arxiv.org/abs/2303.09556); "snr_plus_one" = SNR + 1.

    time_sampling: training times, "uniform" on [t_min, 1] or "logit_normal" (``logit(t) ~
    N(logit_mean, logit_std^2)``, Esser et al. 2024, https://arxiv.org/abs/2403.03206), which
    spends the steps on the middle times. Both are stratified over the batch.

    t_max (with t_min): train on the times [t_min, t_max] only, an expert for that range of
    noise levels (eDiff-I, Balaji et al. 2022); :func:`noise_range` gives its sigmas, and
    ``diffcore.denoisers.NoiseLevelExperts`` composes experts for sampling.

    Flow matching is this process with ``FlowSchedule`` and ``prediction="flow"``
    (:func:`flow_matching`), so every sampler and editing method runs it unchanged.
    """

    schedule: NoiseSchedule = LinearSchedule()
    prediction: Prediction = "eps"
    weighting: Weighting = "uniform"
    min_snr_gamma: float = 5.0
    sigma_data: float = 1.0
    t_min: float = 1e-3
    t_max: float = 1.0
    time_sampling: TimeSampling = "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0

    def __post_init__(self) -> None:
        if self.time_sampling not in TIME_SAMPLINGS:
            raise ValueError(
                f"unknown time_sampling {self.time_sampling!r}; expected one of {TIME_SAMPLINGS}"
            )
        if not self.logit_std > 0:
            raise ValueError(f"logit_std must be positive, got {self.logit_std}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(
                f"unknown prediction {self.prediction!r}; expected one of {PREDICTIONS}"
            )
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; expected one of {WEIGHTINGS}")
        if not 0.0 <= self.t_min < self.t_max <= 1.0:
            raise ValueError(
                f"need 0 <= t_min < t_max <= 1, got t_min={self.t_min}, t_max={self.t_max}"
            )

    def corrupt(
        self, x0: Tensor, t: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Noise x0 (B, ...) to times t (B,): returns (x_t, eps)."""
        alpha, sigma = alpha_sigma(self.schedule.logsnr(t.detach().double()))
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        return per_sample(alpha, x0) * x0 + per_sample(sigma, x0) * eps, eps

    def sample_time(
        self, batch: int, generator: torch.Generator | None = None, device: Any = "cpu"
    ) -> Tensor:
        """Training times (B,) in [t_min, t_max], float64: stratified uniform, or stratified in
        the logit-normal's quantiles (``time_sampling``), restricted to the range."""
        if self.time_sampling == "uniform":
            return stratified_time(batch, generator, device, self.t_min, self.t_max)
        lo, hi = (self._logit_normal_cdf(t) for t in (self.t_min, self.t_max))
        u = stratified_time(batch, generator, device, lo, hi).clamp(1e-12, 1 - 1e-12)
        z = math.sqrt(2.0) * torch.special.erfinv(2.0 * u - 1.0)  # standard normal quantile
        t = torch.sigmoid(self.logit_mean + self.logit_std * z)
        return t.clamp(self.t_min, self.t_max)

    def _logit_normal_cdf(self, t: float) -> float:
        if t <= 0.0 or t >= 1.0:
            return float(t >= 1.0)
        z = (math.log(t / (1.0 - t)) - self.logit_mean) / self.logit_std
        return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))

    @property
    def noise_range(self) -> tuple[float, float]:
        """The VE noise levels (sigma at t_min, sigma at t_max) this process trains on."""
        return float(self.schedule.sigma(self.t_min)), float(self.schedule.sigma(self.t_max))

    def loss(
        self, net: Any, x0: Tensor, generator: torch.Generator | None = None, **cond: Any
    ) -> Tensor:
        """Weighted denoising loss (a scalar) for a batch x0 (B, ...); noise and times come from
        ``generator``; ``cond`` is passed to the network."""
        t = self.sample_time(x0.shape[0], generator, x0.device)
        sigma = self.schedule.sigma(t)  # variance-exploding level
        c_in, c_skip, c_out = preconditioning(self.prediction, sigma, self.sigma_data)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x = x0 + per_sample(sigma, x0) * eps
        target = (x0 - per_sample(c_skip, x0) * x) / per_sample(c_out, x0)
        out = net(per_sample(c_in, x0) * x, t.to(torch.float32), **cond)
        err = (out.float() - target.float()).pow(2).flatten(1).mean(1)
        return (err * self.loss_weight(sigma).to(err)).mean()

    def loss_weight(self, sigma: Tensor) -> Tensor:
        """Factor on the network-target MSE that gives the chosen x0-error weighting."""
        if self.weighting == "uniform":
            return torch.ones_like(sigma)
        _, _, c_out = preconditioning(self.prediction, sigma, self.sigma_data)
        snr = sigma.pow(-2)
        x0_weight = snr.clamp(max=self.min_snr_gamma) if self.weighting == "min_snr" else snr + 1
        return x0_weight * c_out**2

    def denoiser(self, net: Any) -> NetworkDenoiser:
        """The trained network as a ``Denoiser(x, sigma, **cond) -> x0`` for the samplers."""
        return NetworkDenoiser(net, self.schedule, self.prediction, self.sigma_data)

    @property
    def sigma_max(self) -> float:
        """Noise level where sampling starts (t = 1)."""
        return self.schedule.sigma_max


def flow_matching(
    time_sampling: TimeSampling = "logit_normal",
    schedule: FlowSchedule | None = None,
    **fields: Any,
) -> GaussianProcess:
    """Flow matching (rectified flow): the straight path ``x_t = (1 - t) x0 + t eps`` of
    :class:`~diffcore.schedules.FlowSchedule`, a network that predicts the velocity
    ``eps - x0`` with a plain MSE, and logit-normal training times by default. It is a
    ``GaussianProcess`` whose denoiser (``sigma = t / (1 - t)``) every sampler takes as it is."""
    return GaussianProcess(
        schedule=schedule or FlowSchedule(),
        prediction="flow",
        time_sampling=time_sampling,
        **fields,
    )


PROCESSES: dict[str, dict[str, str]] = {
    "diffusion": {},
    "flow": {
        "schedule": "flow",
        "prediction": "flow",
        "weighting": "uniform",
        "time_sampling": "logit_normal",
    },
}
"""What a domain model's config sets for each process choice (``--process``): nothing for the
config's own diffusion defaults; flow matching's schedule, prediction, loss weighting and time
sampling. The configs of image and audio models name these fields alike."""


def process_fields(name: str) -> dict[str, str]:
    """``PROCESSES[name]``, with the choices in the error for an unknown name."""
    if name not in PROCESSES:
        raise ValueError(f"unknown process {name!r}; expected one of {tuple(PROCESSES)}")
    return dict(PROCESSES[name])


def time_limits(time_range: tuple[float, float] | list[float]) -> dict[str, float]:
    """``GaussianProcess``'s ``t_min`` / ``t_max`` for a model trained on the times
    ``time_range`` = (lo, hi) within [0, 1] (an expert when it is not all of them); the
    process's default ``t_min`` stays at the bottom."""
    lo, hi = (float(v) for v in time_range)
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"a time range must satisfy 0 <= lo < hi <= 1, got {lo}, {hi}")
    return {"t_min": max(lo, GaussianProcess.t_min), "t_max": hi}


def named_schedule(
    name: str, *, logsnr_min: float = -10.0, logsnr_max: float = 10.0, shift: float = 0.0
) -> NoiseSchedule:
    """The schedule a model config names: "cosine" (with its log-SNR range and shift),
    "linear" (DDPM's betas) or "flow" (flow matching's straight path)."""
    if name == "cosine":
        return CosineSchedule(logsnr_min, logsnr_max, shift)
    if name == "linear":
        return LinearSchedule()
    if name == "flow":
        return FlowSchedule()
    raise ValueError(f"unknown schedule {name!r}; expected cosine, linear or flow")
