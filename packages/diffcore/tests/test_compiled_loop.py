"""The compiled sampling loop: the same samples as the eager loop for a seed, and the
"compiled" kernel backend against the references."""

import os
import shutil

import pytest
import torch

from diffcore.denoisers import compiled, guidance
from diffcore.kernels import (
    group_norm_silu,
    guided_sampler_update,
    sample_tokens,
    sampler_update,
    use_backend,
)
from diffcore.nn import UNet, UNetConfig
from diffcore.processes import GaussianProcess
from diffcore.samplers import sample_ddpm, sample_dpmpp_2m
from diffcore.schedules import CosineSchedule, karras_grid, trailing_grid

# fp32 with reassociated sums and fused multiply-adds: a few ulps per op, compounded over a
# 6-step sampler on a 2-level U-Net. Measured max difference ~1e-6; the bound leaves 20x room.
TOLERANCE = 2e-5

# Each compile takes seconds on a 2-core CPU; inductor's CPU backend needs a C++ compiler.
HAS_CXX = any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "clang++", "c++"))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not HAS_CXX, reason="torch.compile on CPU needs a C++ compiler"),
]


def tiny_unet(seed: int) -> UNet:
    torch.manual_seed(seed)
    config = UNetConfig(
        in_channels=1,
        channels=(8, 16),
        blocks_per_level=1,
        attention_levels=(),
        mid_attention=True,
        head_dim=8,
        num_classes=3,
        norm_groups=4,
    )
    net = UNet(config).eval()
    with torch.no_grad():  # a freshly built U-Net zeroes its output layer; make it say something
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def test_compiled_loop_repeats_the_eager_loop_for_a_seed():
    process = GaussianProcess(CosineSchedule(), prediction="v")
    labels, null = torch.tensor([0, 1, 2]), torch.full((3,), 3)
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for net in (tiny_unet(0), tiny_unet(1)):  # two weight sets: the frozen program must not leak
        eager = guidance(process.denoiser(net), 2.0, {"labels": labels}, {"labels": null})
        fast = compiled(eager)
        grid = karras_grid(6, 0.01, process.sigma_max)
        want = sample_dpmpp_2m(eager, x, grid)
        got = sample_dpmpp_2m(fast, x, grid)
        assert want.abs().max() > 0.1  # the samples say something
        assert (got - want).abs().max() < TOLERANCE
        # stochastic: the noise comes from the caller's generator, so the draws repeat too
        grid = trailing_grid(process.schedule, 6)
        want = sample_ddpm(eager, x, grid, generator=torch.Generator().manual_seed(2))
        got = sample_ddpm(fast, x, grid, generator=torch.Generator().manual_seed(2))
        assert (got - want).abs().max() < TOLERANCE


def test_compiled_backend_matches_the_references():
    g = torch.Generator().manual_seed(0)
    x, d, n, p = (torch.randn(5, 7, generator=g) for _ in range(4))
    with use_backend("compiled"):
        got = sampler_update(x, d, 0.3, 0.7, noise=n, c=0.1, prev=p, d=-0.2)
        got_guided, got_d = guided_sampler_update(x, d, n, 3.0, 0.3, 0.7, prev=p, d=-0.2)
        again = sampler_update(x, d, 0.9, 0.1)  # new coefficients, no noise: still right
    with use_backend("reference"):
        want = sampler_update(x, d, 0.3, 0.7, noise=n, c=0.1, prev=p, d=-0.2)
        want_guided, want_d = guided_sampler_update(x, d, n, 3.0, 0.3, 0.7, prev=p, d=-0.2)
        want_again = sampler_update(x, d, 0.9, 0.1)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_guided, want_guided, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_d, want_d, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(again, want_again, rtol=1e-6, atol=1e-6)

    h = torch.randn(2, 8, 5, 3, generator=g)
    weight, bias = torch.randn(8, generator=g), torch.randn(8, generator=g)
    scale, shift = torch.randn(2, 8, generator=g), torch.randn(2, 8, generator=g)
    with torch.no_grad():
        with use_backend("compiled"):
            got = group_norm_silu(h, 4, weight, bias, scale, shift)
        with use_backend("reference"):
            want = group_norm_silu(h, 4, weight, bias, scale, shift)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)

    logits = 3 * torch.randn(6, 37, generator=g)
    noise = torch.rand(6, 37, generator=g, dtype=torch.float64)
    with use_backend("compiled"):
        tokens, confidence = sample_tokens(logits, temperature=0.8, top_p=0.9, noise=noise)
    with use_backend("reference"):
        want_tokens, want_confidence = sample_tokens(
            logits, temperature=0.8, top_p=0.9, noise=noise
        )
    assert torch.equal(tokens, want_tokens)
    torch.testing.assert_close(confidence, want_confidence, rtol=1e-6, atol=1e-6)
