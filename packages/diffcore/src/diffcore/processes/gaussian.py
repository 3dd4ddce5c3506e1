"""Gaussian diffusion: corrupt continuous data with noise, and the loss that teaches undoing it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from diffcore._utils import per_sample, stratified_time
from diffcore.denoisers.network import PREDICTIONS, NetworkDenoiser, Prediction, preconditioning
from diffcore.schedules import LinearSchedule, NoiseSchedule, alpha_sigma

Weighting = Literal["uniform", "min_snr", "snr_plus_one"]
WEIGHTINGS: tuple[str, ...] = ("uniform", "min_snr", "snr_plus_one")


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
    """

    schedule: NoiseSchedule = LinearSchedule()
    prediction: Prediction = "eps"
    weighting: Weighting = "uniform"
    min_snr_gamma: float = 5.0
    sigma_data: float = 1.0
    t_min: float = 1e-3

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ValueError(
                f"unknown prediction {self.prediction!r}; expected one of {PREDICTIONS}"
            )
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; expected one of {WEIGHTINGS}")
        if not 0.0 <= self.t_min < 1.0:
            raise ValueError(f"t_min must lie in [0, 1), got {self.t_min}")

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
        """Training times (B,) in [t_min, 1], stratified uniform, float64."""
        return stratified_time(batch, generator, device, self.t_min, 1.0)

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
