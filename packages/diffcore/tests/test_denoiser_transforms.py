import pytest
import torch

from diffcore.denoisers import (
    Cascade,
    Clamped,
    DynamicThreshold,
    NoiseLevelExperts,
    condition,
    guidance,
    noise_augment,
)
from diffcore.samplers import sample_euler
from diffcore.schedules import karras_grid
from diffcore.toys import GaussianMixture


class ClassDenoiser:
    """Conditional toy denoiser: pulls x towards a per-class centre (label 2 = null, centre 0)."""

    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])

    def __init__(self):
        self.calls, self.batch_sizes = 0, []

    def __call__(self, x, sigma, *, labels):
        self.calls += 1
        self.batch_sizes.append(x.shape[0])
        w = (1 / (1 + sigma**2))[:, None]
        return w * x + (1 - w) * self.centres[labels]


def test_condition_binds_keyword_arguments():
    d = ClassDenoiser()
    x, s = torch.randn(4, 2), torch.ones(4)
    labels = torch.tensor([0, 1, 0, 1])
    torch.testing.assert_close(condition(d, labels=labels)(x, s), d(x, s, labels=labels))


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0])
def test_guidance_is_the_extrapolation_from_unconditional_to_conditional(scale):
    d = ClassDenoiser()
    x, s = torch.randn(4, 2), torch.full((4,), 2.0)
    labels = torch.tensor([0, 1, 0, 1])
    null = torch.full((4,), 2)
    guided = guidance(d, scale, {"labels": labels}, {"labels": null})
    out = guided(x, s)
    c, u = d(x, s, labels=labels), d(x, s, labels=null)
    torch.testing.assert_close(out, u + scale * (c - u))


def test_guidance_makes_one_batched_network_call():
    d = ClassDenoiser()
    guided = guidance(
        d, 2.0, {"labels": torch.zeros(5, dtype=torch.long)}, {"labels": torch.full((5,), 2)}
    )
    guided(torch.randn(5, 2), torch.ones(5))
    assert d.calls == 1 and d.batch_sizes == [10]


def test_guidance_needs_matching_conditioning_names():
    with pytest.raises(ValueError, match="same arguments"):
        guidance(ClassDenoiser(), 2.0, {"labels": torch.zeros(1)}, {"caption": torch.zeros(1)})


class TwoClassDenoiser:
    """Exact denoisers of N((+1, 0), I) (label 0), N((-1, 0), I) (label 1) and their 50/50
    mixture (label 2, the null label)."""

    def __init__(self):
        one = torch.ones(1, dtype=torch.float64)
        self.by_label = [
            GaussianMixture(torch.tensor([[1.0, 0.0]], dtype=torch.float64), one, one),
            GaussianMixture(torch.tensor([[-1.0, 0.0]], dtype=torch.float64), one, one),
            GaussianMixture(
                torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64),
                torch.ones(2, dtype=torch.float64),
                torch.full((2,), 0.5, dtype=torch.float64),
            ),
        ]

    def __call__(self, x, sigma, *, labels):
        out = torch.empty_like(x)
        for k, mixture in enumerate(self.by_label):
            rows = labels == k
            if rows.any():
                out[rows] = mixture(x[rows], sigma[rows])
        return out


def test_guidance_sharpens_class_conditional_samples():
    """Guidance samples p(x|c) p(c|x)^(w-1): with scale 3 more samples land on the class's side."""
    d = TwoClassDenoiser()
    n = 4000
    labels, null = torch.zeros(n, dtype=torch.long), torch.full((n,), 2)
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = karras_grid(30, 0.002, 20.0)
    plain = sample_euler(condition(d, labels=labels), noise, grid)
    guided = sample_euler(guidance(d, 3.0, {"labels": labels}, {"labels": null}), noise, grid)
    right_side = lambda s: (s[:, 0] > 0).double().mean().item()
    assert right_side(plain) == pytest.approx(0.841, abs=0.02)  # Phi(1): the conditional itself
    assert right_side(guided) > right_side(plain) + 0.05


def test_clamp_and_dynamic_threshold_bound_the_estimate():
    wild = lambda x, sigma: 5 * x
    x = torch.randn(8, 100)
    assert Clamped(wild)(x, torch.ones(8)).abs().max() <= 1.0
    out = DynamicThreshold(wild, quantile=0.9)(x, torch.ones(8))
    assert out.abs().max() <= 1.0 + 1e-6
    tame = lambda x, sigma: 0.1 * x.clamp(-1, 1)
    torch.testing.assert_close(DynamicThreshold(tame)(x, torch.ones(8)), tame(x, None))


def test_noise_level_experts_route_each_sample_to_its_range():
    experts = [lambda x, s, k=k: torch.full_like(x, float(k)) for k in range(3)]
    routed = NoiseLevelExperts(experts, boundaries=[0.5, 5.0])
    sigma = torch.tensor([0.1, 0.5, 1.0, 4.9, 5.0, 80.0])
    out = routed(torch.zeros(6, 1), sigma)
    assert out.squeeze(1).tolist() == [0, 1, 1, 1, 2, 2]


def test_noise_level_experts_validate_their_boundaries():
    with pytest.raises(ValueError, match="boundaries"):
        NoiseLevelExperts([lambda x, s: x] * 3, boundaries=[1.0])
    with pytest.raises(ValueError, match="increase"):
        NoiseLevelExperts([lambda x, s: x] * 3, boundaries=[2.0, 1.0])


def test_noise_augment_has_the_variance_preserving_scale():
    x = torch.ones(100_000, 1)
    aug, level = noise_augment(x, torch.full((100_000,), 1.0), torch.Generator().manual_seed(0))
    assert float(aug.mean()) == pytest.approx(2**-0.5, abs=1e-2)
    assert float(aug.std()) == pytest.approx(2**-0.5, rel=1e-2)
    assert torch.equal(level, torch.full((100_000,), 1.0))


def test_cascade_feeds_the_upsampled_noise_augmented_base_output_to_the_second_stage():
    seen = {}
    base = lambda x, s: torch.full_like(x, 0.5)  # the base "model" always outputs 0.5

    def super_res(x, s, *, low_res, aug_sigma):
        seen["low_res"], seen["aug_sigma"] = low_res, aug_sigma
        return low_res * (1 + aug_sigma[:, None, None, None] ** 2).sqrt()  # undo the VP scaling

    cascade = Cascade(base, super_res, aug_sigma=0.0)
    low, high = cascade.sample(
        sample_euler,
        torch.randn(2, 1, 4, 4),
        torch.randn(2, 1, 8, 8),
        karras_grid(3, 0.01, 10.0),
        karras_grid(3, 0.01, 10.0),
        generator=torch.Generator().manual_seed(0),
    )
    assert low.shape == (2, 1, 4, 4) and high.shape == (2, 1, 8, 8)
    torch.testing.assert_close(high, torch.full((2, 1, 8, 8), 0.5))
    assert seen["low_res"].shape == (2, 1, 8, 8) and torch.equal(seen["aug_sigma"], torch.zeros(2))
    noisy = Cascade(base, super_res, aug_sigma=0.5).super_res_stage(
        low, (8, 8), torch.Generator().manual_seed(1)
    )
    noisy(torch.zeros(2, 1, 8, 8), torch.ones(2))
    assert not torch.allclose(seen["low_res"], torch.full((2, 1, 8, 8), 0.5 / 1.25**0.5))
