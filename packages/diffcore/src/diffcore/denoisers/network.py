"""Turn a raw network into a :class:`~diffcore.denoisers.protocols.Denoiser`.

Every parameterization (epsilon, x0, v, EDM, flow matching's velocity) is one preconditioning of
the same form (Karras et al. 2022, https://arxiv.org/abs/2206.00364, table 1):

    D(x, sigma) = c_skip(sigma) * x + c_out(sigma) * F(c_in(sigma) * x, t(sigma))

with x in variance-exploding coordinates (``x = x0 + sigma * eps``). For eps, x0 and v the input
``c_in * x`` is exactly the variance-preserving sample ``alpha * x0 + sigma_vp * eps`` the network
was trained on (for flow, the interpolant ``(1 - t) x0 + t eps`` of ``FlowSchedule``), and
``t(sigma)`` is the schedule's time, so the network never sees VE coordinates.
Training (``GaussianProcess``) uses the same coefficients, so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from diffcore._utils import per_sample
from diffcore.schedules import NoiseSchedule

Prediction = Literal["eps", "x0", "v", "edm", "flow"]
PREDICTIONS: tuple[str, ...] = ("eps", "x0", "v", "edm", "flow")


def preconditioning(
    prediction: Prediction, sigma: Tensor, sigma_data: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """(c_in, c_skip, c_out) for a parameterization at VE noise level ``sigma`` (any shape)."""
    if prediction == "edm":
        total = sigma**2 + sigma_data**2
        return total.rsqrt(), sigma_data**2 / total, sigma * sigma_data * total.rsqrt()
    alpha = (1.0 + sigma**2).rsqrt()  # variance-preserving signal scale
    sigma_vp = sigma * alpha
    if prediction == "eps":
        return alpha, torch.ones_like(sigma), -sigma
    if prediction == "x0":
        return alpha, torch.zeros_like(sigma), torch.ones_like(sigma)
    if prediction == "v":  # v = alpha * eps - sigma_vp * x0  =>  x0 = alpha * x_vp - sigma_vp * v
        return alpha, alpha**2, -sigma_vp
    if prediction == "flow":  # x_t = (1 - t) x0 + t eps, velocity eps - x0  =>  x0 = x_t - t v
        t = sigma / (1.0 + sigma)  # FlowSchedule's time; the input is x_t = x / (1 + sigma)
        return 1.0 - t, 1.0 - t, -t
    raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")


@dataclass(frozen=True)
class NetworkDenoiser:
    """A network ``net(x_in, t, **cond)`` trained with ``prediction`` on ``schedule``, seen as a
    denoiser ``D(x, sigma, **cond) -> x0``.

    x: (B, ...) VE-coordinate sample; sigma: (B,) noise levels. The network receives
    ``c_in * x`` and the schedule time ``t`` (B,) in [0, 1].
    """

    net: nn.Module | Any
    schedule: NoiseSchedule
    prediction: Prediction = "eps"
    sigma_data: float = 1.0

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ValueError(
                f"unknown prediction {self.prediction!r}; expected one of {PREDICTIONS}"
            )

    def __call__(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        sigma = torch.as_tensor(sigma, device=x.device).expand(x.shape[0])
        s64 = sigma.to(torch.float64)
        c_in, c_skip, c_out = preconditioning(self.prediction, s64, self.sigma_data)
        t = self.schedule.t_of_sigma(s64).to(torch.float32)
        out = self.net(x * per_sample(c_in, x), t, **cond)
        return per_sample(c_skip, x) * x + per_sample(c_out, x) * out.to(x.dtype)
