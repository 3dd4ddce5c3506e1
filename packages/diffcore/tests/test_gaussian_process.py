"""GaussianProcess and the network wrappers, checked against the closed-form ideal predictors of
standard normal data (x0 ~ N(0, 1)), where E[x0 | x] = x / (1 + sigma^2) in VE coordinates."""

import pytest
import torch

from diffcore.denoisers import NetworkDenoiser, preconditioning
from diffcore.processes import GaussianProcess
from diffcore.schedules import CosineSchedule, KarrasSchedule, LinearSchedule, alpha_sigma

SCHEDULES = [LinearSchedule(), CosineSchedule(), KarrasSchedule()]


def ideal_net(schedule, prediction):
    """The MMSE network for x0 ~ N(0, 1) under each parameterization, written from the
    definitions (eps, x0, v) rather than from the preconditioning table."""

    def net(x_in, t):
        alpha, sigma_vp = alpha_sigma(schedule.logsnr(t.double()))
        a, s = alpha.to(x_in)[:, None], sigma_vp.to(x_in)[:, None]
        if prediction == "eps":  # x_in = a x0 + s eps ~ N(0, 1); Cov(eps, x_in) = s
            return s * x_in
        if prediction == "x0":  # Cov(x0, x_in) = a
            return a * x_in
        if prediction == "v":  # v = a eps - s x0; Cov(v, x_in) = a s - s a = 0
            return torch.zeros_like(x_in)
        raise AssertionError(prediction)

    return net


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_wrapped_ideal_networks_give_the_ideal_denoiser(schedule, prediction):
    denoiser = NetworkDenoiser(ideal_net(schedule, prediction), schedule, prediction)
    x = torch.randn(64, 3, dtype=torch.float64)
    sigma = torch.logspace(-2, 1.5, 64, dtype=torch.float64)
    expected = x / (1 + sigma[:, None] ** 2)
    torch.testing.assert_close(denoiser(x, sigma), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "edm"])
def test_a_network_that_outputs_the_exact_target_has_zero_loss_and_denoises_exactly(prediction):
    schedule = CosineSchedule()
    process = GaussianProcess(schedule, prediction=prediction)
    x0 = torch.randn(32, 4, dtype=torch.float64)

    def oracle(x_in, t):  # knows x0; returns the regression target for its input
        sigma = schedule.sigma(t.double())[:, None]
        c_in, c_skip, c_out = preconditioning(prediction, sigma)
        x = x_in / c_in
        return (x0 - c_skip * x) / c_out

    loss = process.loss(oracle, x0, generator=torch.Generator().manual_seed(0))
    assert float(loss) < 1e-12
    x = x0 + 3.0 * torch.randn_like(x0)
    # the network sees t in float32, so the round trip sigma -> t -> sigma costs ~1e-7 relative
    torch.testing.assert_close(
        process.denoiser(oracle)(x, torch.full((32,), 3.0)), x0, atol=1e-5, rtol=1e-5
    )


def test_eps_target_is_the_noise_that_corrupt_adds():
    process = GaussianProcess(LinearSchedule(), prediction="eps")
    x0 = torch.randn(16, 5, dtype=torch.float64)
    t = torch.rand(16, dtype=torch.float64)
    xt, eps = process.corrupt(x0, t, torch.Generator().manual_seed(1))
    alpha, sigma = alpha_sigma(LinearSchedule().logsnr(t))
    torch.testing.assert_close(xt, alpha[:, None] * x0 + sigma[:, None] * eps)


def test_corrupt_has_the_schedules_mean_and_variance():
    process = GaussianProcess(CosineSchedule())
    x0 = torch.full((200_000, 1), 0.7, dtype=torch.float64)
    t = torch.full((200_000,), 0.6, dtype=torch.float64)
    xt, _ = process.corrupt(x0, t, torch.Generator().manual_seed(2))
    alpha, sigma = alpha_sigma(CosineSchedule().logsnr(torch.tensor(0.6, dtype=torch.float64)))
    assert float(xt.mean()) == pytest.approx(0.7 * float(alpha), abs=3e-3)
    assert float(xt.std()) == pytest.approx(float(sigma), rel=1e-2)


def test_min_snr_weighting_matches_the_paper_for_each_prediction():
    sigma = torch.logspace(-2, 2, 50, dtype=torch.float64)
    snr = sigma.pow(-2)
    gamma = 5.0
    expected = {
        "eps": snr.clamp(max=gamma) / snr,  # Hang et al. 2023, eq. for eps-prediction
        "x0": snr.clamp(max=gamma),
        "v": snr.clamp(max=gamma) / (snr + 1),
    }
    for prediction, want in expected.items():
        process = GaussianProcess(prediction=prediction, weighting="min_snr", min_snr_gamma=gamma)
        torch.testing.assert_close(process.loss_weight(sigma), want)


def test_snr_plus_one_weighting_is_uniform_for_v_prediction():
    sigma = torch.logspace(-2, 2, 10, dtype=torch.float64)
    process = GaussianProcess(prediction="v", weighting="snr_plus_one")
    torch.testing.assert_close(process.loss_weight(sigma), torch.ones_like(sigma))


def test_training_times_are_stratified_and_reproducible():
    process = GaussianProcess(t_min=0.01)
    t = process.sample_time(100, torch.Generator().manual_seed(3))
    assert t.min() >= 0.01 and t.max() <= 1.0
    strata = ((t - 0.01) / 0.99 * 100).floor().long()
    assert sorted(strata.tolist()) == list(range(100))  # one draw per stratum
    assert torch.equal(t, process.sample_time(100, torch.Generator().manual_seed(3)))


def test_a_small_network_learns_the_ideal_denoiser_of_gaussian_data():
    torch.manual_seed(0)
    process = GaussianProcess(CosineSchedule(), prediction="v")
    mean, std = torch.tensor([1.0, -1.0]), torch.tensor([0.3, 1.0])
    data = torch.randn(4096, 2) * std + mean
    net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.SiLU(), torch.nn.Linear(64, 2))
    model = lambda x, t: net(torch.cat([x, t[:, None]], 1))
    denoiser = process.denoiser(model)
    x = torch.randn(1000, 2) * (std**2 + 0.25).sqrt() + mean  # data noised to sigma = 0.5
    sigma = torch.full((1000,), 0.5)
    ideal = mean + std**2 / (std**2 + 0.25) * (x - mean)

    def error() -> float:
        with torch.no_grad():
            return float((denoiser(x, sigma) - ideal).pow(2).mean())

    before = error()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        loss = process.loss(model, data[torch.randint(0, 4096, (256,), generator=g)], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert error() < 0.05 * before, (before, error())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prediction": "score"}, "unknown prediction"),
        ({"weighting": "p2"}, "unknown weighting"),
        ({"t_min": 1.0}, "t_min"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianProcess(**kwargs)
