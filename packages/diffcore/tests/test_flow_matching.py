"""Flow matching as a GaussianProcess: the straight path, the velocity target, the time
sampling, and every sampler driven by the exact velocity field of a toy mixture."""

from __future__ import annotations

import pytest
import torch

from diffcore.metrics import sliced_wasserstein
from diffcore.processes import GaussianProcess, flow_matching
from diffcore.samplers.continuous import SAMPLERS
from diffcore.schedules import FlowSchedule, trailing_grid
from diffcore.toys import uneven_mixture

MIX = uneven_mixture()


def test_sigma_and_time_round_trip_and_sigma_is_t_over_one_minus_t():
    schedule = FlowSchedule()
    t = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    sigma = schedule.sigma(t)
    torch.testing.assert_close(sigma, t / (1 - t))
    torch.testing.assert_close(schedule.t_of_sigma(sigma), t)
    assert schedule.sigma_max == pytest.approx(0.999 / 0.001)
    with pytest.raises(ValueError, match="0 < t_min < t_max < 1"):
        FlowSchedule(t_max=1.0)


def test_the_network_sees_the_straight_path_and_learns_the_velocity():
    process = flow_matching(time_sampling="uniform", t_min=0.05)
    x0 = torch.randn(256, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    seen = {}

    def oracle(x_t, t):  # recovers eps from the straight path and returns eps - x0 exactly
        tt = t.double()[:, None]
        eps = (x_t - (1 - tt) * x0) / tt
        seen["eps"] = eps
        return eps - x0

    loss = process.loss(oracle, x0, torch.Generator().manual_seed(1))
    assert float(loss) < 1e-12  # the loss compares in float32
    eps = seen["eps"]  # the noise really is standard normal: the input was (1 - t) x0 + t eps
    assert abs(float(eps.mean())) < 0.1 and abs(float(eps.std()) - 1) < 0.1
    zero = process.loss(lambda x_t, t: torch.zeros_like(x_t), x0, torch.Generator().manual_seed(1))
    expected = (eps - x0).pow(2).mean()  # plain velocity MSE
    torch.testing.assert_close(zero, expected.float())


def test_logit_normal_times_have_normal_logits_and_stay_in_range():
    process = GaussianProcess(time_sampling="logit_normal", logit_mean=0.5, logit_std=0.8)
    t = process.sample_time(4096, torch.Generator().manual_seed(0))
    assert t.dtype == torch.float64 and float(t.min()) >= process.t_min and float(t.max()) <= 1
    logit = torch.logit(t)
    assert float(logit.mean()) == pytest.approx(0.5, abs=0.02)
    assert float(logit.std()) == pytest.approx(0.8, abs=0.02)
    with pytest.raises(ValueError, match="time_sampling"):
        GaussianProcess(time_sampling="beta")


def distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return sliced_wasserstein(a, b, projections=128, generator=torch.Generator().manual_seed(2))


def exact_velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The mixture's exact flow-matching velocity: (x_t - E[x0 | x_t]) / t."""
    tt = t.double()[:, None]
    sigma = (tt / (1 - tt)).squeeze(1)
    x0 = MIX.denoise(x_t / (1 - tt), sigma)
    return (x_t - x0) / tt


def test_the_wrapped_exact_velocity_is_the_exact_denoiser():
    denoiser = flow_matching().denoiser(exact_velocity)
    x = 3 * torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sigma = torch.logspace(-2, 2, 64, dtype=torch.float64)
    torch.testing.assert_close(denoiser(x, sigma), MIX.denoise(x, sigma))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_reaches_the_mixture_from_the_exact_velocity(name):
    process = flow_matching()
    denoiser = process.denoiser(exact_velocity)
    exact = MIX.sample(2000, torch.Generator().manual_seed(1))
    floor = distance(MIX.sample(2000, torch.Generator().manual_seed(7)), exact)
    dists = []
    for steps in (2, 50):
        grid = trailing_grid(process.schedule, steps)
        noise = torch.randn(
            2000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
        )
        x = SAMPLERS[name](denoiser, noise, grid, generator=torch.Generator().manual_seed(3))
        dists.append(distance(x, exact))
    assert dists[1] < dists[0] and dists[1] < 2 * floor + 0.02, (dists, floor)
