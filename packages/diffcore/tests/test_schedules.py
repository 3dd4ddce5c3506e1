import math

import pytest
import torch

from diffcore.schedules import (
    CosineSchedule,
    KarrasSchedule,
    LinearSchedule,
    SigmoidSchedule,
    alpha_sigma,
    karras_grid,
    logsnr_to_sigma,
    sigma_to_logsnr,
    trailing_grid,
    uniform_grid,
)

SCHEDULES = [
    LinearSchedule(),
    CosineSchedule(),
    CosineSchedule(shift=-2.0),
    SigmoidSchedule(),
    KarrasSchedule(),
]
T = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: repr(s))
def test_logsnr_decreases_with_time_and_inverts_exactly(schedule):
    logsnr = schedule.logsnr(T)
    assert torch.all(logsnr[1:] < logsnr[:-1])
    torch.testing.assert_close(schedule.t_of_logsnr(logsnr), T, atol=1e-9, rtol=0)
    torch.testing.assert_close(schedule.t_of_sigma(schedule.sigma(T)), T, atol=1e-9, rtol=0)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: repr(s))
def test_variance_preserving_pair_and_variance_exploding_level_agree(schedule):
    alpha, sigma = alpha_sigma(schedule.logsnr(T))
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(T))
    torch.testing.assert_close(schedule.sigma(T), sigma / alpha)


def test_linear_schedule_matches_ddpm_discrete_betas():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0)
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    alpha_c, _ = alpha_sigma(LinearSchedule().logsnr(t))
    # the continuous VP-SDE is DDPM's limit (log(1 - beta) ~ -beta): past the first 100 steps
    # (where the half-step offset of the discretization dominates) -log alpha_bar agrees to 1%
    relative = ((alpha_c**2).log() / alpha_bar.log() - 1).abs()
    assert relative[100:].max() < 0.01


def test_cosine_schedule_spans_its_logsnr_range():
    s = CosineSchedule(logsnr_min=-12.0, logsnr_max=9.0)
    assert float(s.logsnr(0.0)) == pytest.approx(9.0)
    assert float(s.logsnr(1.0)) == pytest.approx(-12.0)
    shifted = CosineSchedule(shift=-2.0)
    assert float(shifted.logsnr(0.5) - CosineSchedule().logsnr(0.5)) == pytest.approx(-2.0)


def test_karras_schedule_ends_at_its_sigmas():
    s = KarrasSchedule(sigma_min=0.01, sigma_max=50.0)
    assert float(s.sigma(0.0)) == pytest.approx(0.01)
    assert s.sigma_max == pytest.approx(50.0) and float(s.sigma(1.0)) == pytest.approx(50.0)


def test_logsnr_sigma_conversions_invert():
    sigma = torch.tensor([0.01, 1.0, 80.0], dtype=torch.float64)
    torch.testing.assert_close(logsnr_to_sigma(sigma_to_logsnr(sigma)), sigma)
    assert float(sigma_to_logsnr(torch.tensor(1.0))) == 0.0


def test_time_outside_unit_interval_is_rejected():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        LinearSchedule().logsnr(torch.tensor([1.5]))


def test_karras_grid_matches_the_formula():
    g = karras_grid(4, 0.002, 80.0, rho=7.0)
    assert (
        g.shape == (5,)
        and g[-1] == 0
        and g[0] == pytest.approx(80.0)
        and g[-2] == pytest.approx(0.002)
    )
    mid = (80.0 ** (1 / 7) + (1 / 3) * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    assert float(g[1]) == pytest.approx(mid)


def test_trailing_grid_starts_at_full_noise_and_uniform_grid_ends_near_clean():
    s = LinearSchedule()
    trailing = trailing_grid(s, 10)
    uniform = uniform_grid(s, 10)
    assert trailing.shape == uniform.shape == (11,)
    assert float(trailing[0]) == pytest.approx(s.sigma_max) == float(uniform[0])
    assert float(trailing[-2]) == pytest.approx(float(s.sigma(0.1)))
    assert float(uniform[-2]) == pytest.approx(float(s.sigma(1e-3)))
    for g in (trailing, uniform):
        assert torch.all(g[1:] < g[:-1]) and g[-1] == 0


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_grids_need_a_positive_step_count(n):
    with pytest.raises(ValueError, match="positive integer"):
        trailing_grid(LinearSchedule(), n)


def test_sigma_max_is_large_enough_to_forget_the_data():
    for s in SCHEDULES:
        assert s.sigma_max > 40.0, s  # data in [-1, 1] is buried under >= 40x its scale
    assert math.isfinite(LinearSchedule().sigma_max)
