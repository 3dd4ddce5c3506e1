"""Continuous samplers, judged against the exact denoiser of a 2-D Gaussian mixture."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from diffcore.metrics import sliced_wasserstein
from diffcore.samplers import (
    Step,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_dpmpp_3m,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
    sample_unipc,
)
from diffcore.samplers.continuous import SAMPLERS, exponential_weights
from diffcore.samplers.smc import sample_smc
from diffcore.schedules import karras_grid
from diffcore.toys import uneven_mixture

MIX = uneven_mixture()
N = 4000
DETERMINISTIC = {
    "euler": sample_euler,
    "ddim": sample_ddim,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_3m": sample_dpmpp_3m,
    "unipc": sample_unipc,
}
STOCHASTIC = {"ddpm": sample_ddpm, "euler_ancestral": sample_euler_ancestral}


def grid(n: int) -> torch.Tensor:
    return karras_grid(n, 0.002, 20.0)  # 20 is 15x the data scale: pure noise for this toy


def noise(n: int = N, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def distance_to_mixture(samples: torch.Tensor, seed: int = 1) -> float:
    exact = MIX.sample(samples.shape[0], torch.Generator().manual_seed(seed))
    return sliced_wasserstein(
        samples, exact, projections=128, generator=torch.Generator().manual_seed(2)
    )


def noise_floor() -> float:
    """Distance between two independent exact sample sets: what a perfect sampler scores."""
    return distance_to_mixture(MIX.sample(N, torch.Generator().manual_seed(7)))


class CountingDenoiser:
    def __init__(self, denoiser):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x, sigma, **cond):
        self.calls += 1
        return self.denoiser(x, sigma, **cond)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samples_approach_the_mixture_as_steps_grow(name):
    sampler = SAMPLERS[name]
    steps = (3, 8, 50) if name in DETERMINISTIC else (3, 8, 100)
    dists = [
        distance_to_mixture(
            sampler(MIX, noise(), grid(n), generator=torch.Generator().manual_seed(3))
        )
        for n in steps
    ]
    floor = noise_floor()
    assert dists[0] > dists[-1], dists
    assert dists[-1] < 2.0 * floor + 0.01, (dists, floor)


def test_second_order_samplers_beat_first_order_at_equal_network_calls():
    """At 10 and 20 steps, ODE solution error against a 1000-step Heun reference from the same
    starting noise: DPM-Solver++(2M) (1 call per step) beats Euler/DDIM at the same steps, and
    Heun (2n - 1 calls) beats Euler/DDIM given the same 2n - 1 calls."""
    x = noise(2000)
    reference = sample_heun(MIX, x, grid(1000))
    error = lambda out: (out - reference).norm(dim=1).mean().item()
    for steps in (10, 20):
        calls = 2 * steps - 1
        euler_same_steps = min(
            error(sample_euler(MIX, x, grid(steps))), error(sample_ddim(MIX, x, grid(steps)))
        )
        euler_same_calls = min(
            error(sample_euler(MIX, x, grid(calls))), error(sample_ddim(MIX, x, grid(calls)))
        )
        assert error(sample_dpmpp_2m(MIX, x, grid(steps))) < euler_same_steps
        assert error(sample_heun(MIX, x, grid(steps))) < 0.8 * euler_same_calls


def gaussian_ode_error(sampler, steps: int) -> float:
    """Largest error of ``sampler`` against the exact probability-flow ODE for x0 ~ N(0, s^2):
    x(sigma) = x(sigma_max) * sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_max^2), on a grid even in
    log-sigma from 80 to 0.01, whose last step (to 0, x = D(x)) every sampler takes alike."""
    s, top, bottom = 0.5, 80.0, 0.01
    exact_denoiser = lambda x, sigma: x * s**2 / (s**2 + sigma[:, None] ** 2)  # noqa: E731
    levels = torch.logspace(math.log10(top), math.log10(bottom), steps, dtype=torch.float64)
    x = noise(64)
    at_bottom = x * top * math.sqrt(s**2 + bottom**2) / math.sqrt(s**2 + top**2)
    exact = at_bottom * s**2 / (s**2 + bottom**2)
    out = sampler(exact_denoiser, x, torch.cat([levels, levels.new_zeros(1)]))
    return float((out - exact).abs().max())


def test_multistep_solvers_converge_at_their_order_on_gaussian_data():
    # halving the step size divides the error by about 2^order (measured: euler 1.0, dpmpp_2m
    # 2.0, unipc with a first-order predictor 2.0, unipc 3.0, dpmpp_3m 4.1: at least its 3 here)
    unipc1 = lambda d, x, g: sample_unipc(d, x, g, order=1)  # noqa: E731
    solvers = {
        "euler": (sample_euler, 1),
        "dpmpp_2m": (sample_dpmpp_2m, 2),
        "unipc order 1": (unipc1, 2),
        "unipc": (sample_unipc, 3),
        "dpmpp_3m": (sample_dpmpp_3m, 3),
    }
    errors = {
        n: (gaussian_ode_error(s, 40), gaussian_ode_error(s, 80)) for n, (s, _) in solvers.items()
    }
    orders = {n: round(math.log2(a / b), 2) for n, (a, b) in errors.items()}
    for name, (_, order) in solvers.items():
        assert order - 0.2 < orders[name] < order + (1.3 if name == "dpmpp_3m" else 0.2), orders
    assert errors["dpmpp_3m"][0] < 0.1 * errors["dpmpp_2m"][0]
    assert errors["unipc"][0] < 0.5 * errors["dpmpp_2m"][0]


def test_exponential_weights_integrate_polynomials_exactly():
    # the weights integrate e^(u-h) P(u) exactly for P of degree < number of nodes
    h, nodes = 0.7, [0.7, 0.0, -0.5, -1.4]
    cubic = lambda u: 1.0 - 2.0 * u + 3.0 * u * u - 0.5 * u**3  # noqa: E731
    grid = torch.linspace(0, h, 200_001, dtype=torch.float64)
    exact = float(torch.trapezoid(torch.exp(grid - h) * cubic(grid), grid))
    for n in (1, 2, 3, 4):
        weights = exponential_weights(h, nodes[-n:])
        assert sum(weights) == pytest.approx(-math.expm1(-h))  # constants pass unchanged
    weights = exponential_weights(h, nodes)
    assert sum(w * cubic(u) for w, u in zip(weights, nodes, strict=True)) == pytest.approx(exact)


def test_euler_with_churn_reaches_the_mixture_and_zero_churn_is_the_ode():
    x = noise()
    g = lambda: torch.Generator().manual_seed(4)
    assert torch.equal(sample_euler(MIX, x, grid(20), churn=0.0), sample_euler(MIX, x, grid(20)))
    churned = sample_euler(MIX, x, grid(50), generator=g(), churn=10.0)
    assert torch.equal(churned, sample_euler(MIX, x, grid(50), generator=g(), churn=10.0))
    assert not torch.equal(churned, sample_euler(MIX, x, grid(50)))
    assert distance_to_mixture(churned) < 2.0 * noise_floor() + 0.01
    with pytest.raises(ValueError, match="churn must be >= 0"):
        sample_euler(MIX, x, grid(5), churn=-1.0)


def test_heun_counts_two_calls_per_step_but_one_for_the_last():
    d = CountingDenoiser(MIX)
    sample_heun(d, noise(10), grid(6))
    assert d.calls == 2 * 6 - 1


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_same_generator_seed_gives_same_samples(name):
    sampler = SAMPLERS[name]
    a = sampler(MIX, noise(64), grid(10), generator=torch.Generator().manual_seed(5))
    b = sampler(MIX, noise(64), grid(10), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    if name in STOCHASTIC:
        c = sampler(MIX, noise(64), grid(10), generator=torch.Generator().manual_seed(6))
        assert not torch.equal(a, c)


def test_ddim_with_eta_zero_is_euler_and_eta_one_is_ddpm():
    x = noise(256)
    assert torch.equal(sample_ddim(MIX, x, grid(12)), sample_euler(MIX, x, grid(12)))
    g = lambda: torch.Generator().manual_seed(9)
    assert torch.equal(
        sample_ddim(MIX, x, grid(12), eta=1.0, generator=g()),
        sample_ddpm(MIX, x, grid(12), generator=g()),
    )


def conditional_setup(value: float = 0.0):
    known = torch.zeros(N, 2, dtype=torch.float64)
    known[:, 0] = value
    mask = torch.zeros(N, 2, dtype=torch.bool)
    mask[:, 0] = True
    conditional = MIX.conditional([0], torch.tensor([value], dtype=torch.float64))
    exact = conditional.sample(N, torch.Generator().manual_seed(8))
    return known, mask, exact


def w1(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.sort(0).values - b.sort(0).values).abs().mean().item()


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_inpainting_keeps_known_entries_and_moves_the_rest_towards_the_conditional(name):
    """Fix coordinate 0 at 0 (between components). Known entries come back exactly. The free
    coordinate is drawn much closer to the exact conditional than unconditional samples are, but
    not exactly from it: replacement-based inpainting (the known part noised to each level, as in
    SDEdit/RePaint) is biased, because the free part commits to a mode while the known part is
    still noise. ``sample_smc`` below is the exact one."""
    known, mask, exact = conditional_setup()
    out = SAMPLERS[name](
        MIX, noise(), grid(60), known=known, mask=mask, generator=torch.Generator().manual_seed(4)
    )
    assert torch.equal(out[:, 0], known[:, 0])
    unconditional = MIX.sample(N, torch.Generator().manual_seed(3))[:, 1:]
    assert w1(out[:, 1:], exact) < 0.6 * w1(unconditional, exact)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_img2img_runs_the_tail_of_the_grid_and_stays_near_the_input(name):
    sampler = SAMPLERS[name]
    d = CountingDenoiser(MIX)
    x_init = MIX.means[1].expand(256, 2).clone()  # a mode of the mixture
    out = sampler(
        d,
        noise(256),
        grid(40),
        x_init=x_init,
        t_start=0.25,
        generator=torch.Generator().manual_seed(1),
    )
    expected_calls = 10 if name != "heun" else 2 * 10 - 1
    assert d.calls == expected_calls
    # 25% of a Karras grid starts at low noise: the output stays in the input's component
    assert (out - x_init).norm(dim=1).median() < 1.0


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_callback_sees_every_step_in_order(name):
    seen: list[Step] = []
    SAMPLERS[name](
        MIX,
        noise(8),
        grid(7),
        callback=lambda step, x, den: seen.append(step),
        generator=torch.Generator().manual_seed(0),
    )
    assert [s.index for s in seen] == list(range(7))
    assert all(s.total == 7 for s in seen)
    assert seen[-1].level_next == 0.0 and seen[0].level == pytest.approx(20.0)


def test_all_continuous_samplers_share_one_signature():
    head = ["denoiser", "x", "sigmas"]
    keywords = {"generator", "callback", "x_init", "t_start", "known", "mask"}
    for name, sampler in SAMPLERS.items():
        params = inspect.signature(sampler).parameters
        positional = [
            p.name for p in params.values() if p.kind is inspect.Parameter.POSITIONAL_ONLY
        ]
        kw = {p.name for p in params.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
        assert positional == head, name
        assert keywords <= kw, (name, keywords - kw)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.tensor([3.0, 1.0, 0.5]), "end at sigma = 0"),
        (torch.tensor([1.0, 3.0, 0.0]), "decrease"),
        (torch.tensor([[1.0, 0.0]]), "1-D"),
    ],
)
def test_bad_grids_are_rejected_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        sample_euler(MIX, noise(4), bad)


def test_img2img_and_inpainting_arguments_come_in_pairs():
    with pytest.raises(ValueError, match="x_init and t_start"):
        sample_euler(MIX, noise(4), grid(3), t_start=0.5)
    with pytest.raises(ValueError, match="known and mask"):
        sample_euler(MIX, noise(4), grid(3), known=noise(4))


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_particle_inpainting_follows_the_exact_conditional(value):
    """With 50 particles per problem, the free coordinate matches the exact conditional mixture
    to within a few times the distance between two exact sample sets."""
    known, mask, exact = conditional_setup(value)
    out = sample_smc(
        MIX,
        noise(),
        grid(100),
        known=known,
        mask=mask,
        particles=50,
        generator=torch.Generator().manual_seed(4),
    )
    assert torch.equal(out[:, 0], known[:, 0])
    conditional = MIX.conditional([0], torch.tensor([value], dtype=torch.float64))
    floor = w1(conditional.sample(N, torch.Generator().manual_seed(9)), exact)
    replacement = sample_ddpm(
        MIX, noise(), grid(100), known=known, mask=mask, generator=torch.Generator().manual_seed(4)
    )
    assert w1(out[:, 1:], exact) < 3 * floor + 0.02
    assert w1(out[:, 1:], exact) < 0.5 * w1(replacement[:, 1:], exact)


def test_particle_inpainting_checks_its_groups():
    known, mask, _ = conditional_setup()
    with pytest.raises(ValueError, match="whole number of groups"):
        sample_smc(MIX, noise(), grid(5), known=known, mask=mask, particles=3)
    known[1, 0] = 5.0
    with pytest.raises(ValueError, match="identical for all particles"):
        sample_smc(MIX, noise(), grid(5), known=known, mask=mask, particles=16)
