"""More crappifiers (JPEG, band-limiting, stripes), their composition and spec strings, and
refinement with noise that grows with severity."""

from __future__ import annotations

import pytest
import torch

from diffcore.processes import (
    DegradationProcess,
    blur,
    compose,
    identity,
    jpeg,
    lowpass,
    parse_crappifier,
    start_stats,
    stripes,
)
from diffcore.samplers.refine import sample_refine

CRAPPIFIERS = {
    "jpeg": jpeg(min_quality=5),
    "lowpass": lowpass(),
    "freq_mask": stripes("frequency"),
    "time_mask": stripes("time"),
    "blur+jpeg": compose(blur(2.0), jpeg(10)),
    "spec": parse_crappifier("blur:2+lowpass+noise:0.5")[0],
}
SEVERITIES = torch.linspace(0.0, 1.0, 11)


def smooth_images(n: int = 6, size: tuple[int, int] = (24, 20), seed: int = 0) -> torch.Tensor:
    """Images in [-1, 1] with structure at several scales (JPEG is made for such)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 2, 4, 4, generator=g) * 2 - 1
    up = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    return (up + 0.2 * torch.rand(n, 2, *size, generator=g)).clamp(-1, 1)


@pytest.mark.parametrize("name", sorted(CRAPPIFIERS))
@pytest.mark.parametrize("size", [(24, 20), (7, 5), (1, 9)])
def test_every_crappifier_is_exactly_the_identity_at_zero_severity(name, size):
    x = smooth_images(3, size)
    assert torch.equal(CRAPPIFIERS[name](x, torch.zeros(3)), x)


@pytest.mark.parametrize("name", sorted(CRAPPIFIERS))
def test_the_damage_grows_with_severity(name):
    x = smooth_images()
    errors = [
        float((CRAPPIFIERS[name](x, torch.full((6,), float(t))) - x).abs().mean())
        for t in SEVERITIES
    ]
    assert all(b >= a - 1e-4 for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[0] == 0.0 and errors[-1] > 0.05, errors


@pytest.mark.parametrize("name", sorted(CRAPPIFIERS))
def test_each_sample_is_crappified_to_its_own_severity(name):
    x = smooth_images(4)
    t = torch.tensor([0.9, 0.0, 0.4, 0.4])
    batched = CRAPPIFIERS[name](x, t)
    for i in range(4):
        alone = CRAPPIFIERS[name](x[i : i + 1], t[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], alone, rtol=0, atol=1e-6)


def test_jpeg_keeps_block_means_and_loses_detail_as_quality_falls():
    x = smooth_images(2, (16, 16))
    worst = jpeg(1)(x, torch.ones(2))
    # Each block's mean (its DC coefficient / 8) survives to within half its quantisation
    # step, 255 / 8 / 2 grey levels = 0.125 in [-1, 1]: baseline JPEG's tables stop at 255.
    blocks = torch.nn.functional.avg_pool2d(x, 8)
    assert (torch.nn.functional.avg_pool2d(worst, 8) - blocks).abs().max() <= 0.126
    mid = jpeg(1)(x, torch.full((2,), 0.5))
    assert (mid - x).abs().mean() < (worst - x).abs().mean()


def test_lowpass_keeps_the_low_rows_and_silences_the_rest():
    x = smooth_images(1, (10, 6))
    out = lowpass(fill=-1.0)(x, torch.tensor([0.3]))
    assert torch.equal(out[:, :, :7], x[:, :, :7])
    assert (out[:, :, 7:] == -1).all()
    assert (lowpass()(x, torch.ones(1)) == -1).all()  # a constant picture: generation starts here


def test_stripes_grow_as_nested_sets_spread_over_the_axis():
    x = torch.zeros(1, 1, 4, 40)
    masked = [stripes("time", fill=1.0)(x, torch.tensor([t]))[0, 0, 0] == 1 for t in (0.2, 0.5)]
    assert masked[0].sum() == 8 and masked[1].sum() == 20
    assert (masked[1] | ~masked[0]).all()  # what t = 0.2 masks, t = 0.5 masks too
    gaps = masked[0].nonzero().flatten().diff()
    assert gaps.max() <= 8  # spread out, not one block


def test_specs_compose_left_to_right_and_give_the_noise_slope():
    x = smooth_images(2)
    t = torch.tensor([0.5, 1.0])
    degrade, slope = parse_crappifier("blur:2+jpeg:10")
    assert slope == 0.0
    torch.testing.assert_close(degrade(x, t), jpeg(10)(blur(2.0)(x, t), t))
    degrade, slope = parse_crappifier("noise:0.5")
    assert degrade is identity and slope == 0.5
    assert parse_crappifier("lowpass+noise")[1] == 1.0


@pytest.mark.parametrize(
    ("spec", "allowed", "message"),
    [
        ("", None, "names one or more"),
        ("blurr", None, "unknown crappifier 'blurr'"),
        ("blur+jpeg", ("blur",), "unknown crappifier 'jpeg'"),
        ("jpeg:ten", None, "jpeg:ten"),
        ("jpeg:2.5", None, "whole number"),
        ("jpeg:0", None, "in \\[1, 100\\]"),
        ("noise:0", None, "must be positive"),
    ],
)
def test_bad_specs_say_what_was_expected(spec, allowed, message):
    with pytest.raises(ValueError, match=message):
        parse_crappifier(spec, allowed=allowed)


def test_start_stats_are_the_spread_of_per_sample_channel_means():
    x = torch.stack([torch.full((2, 3, 3), v) for v in (0.0, 1.0, 2.0)])
    x[:, 1] = 5.0
    (m0, s0), (m1, s1) = start_stats(x)
    assert (m0, m1, s1) == (1.0, 5.0, 0.0) and s0 == pytest.approx(1.0)


# --- noise that grows with severity ----------------------------------------------------------


def test_the_process_adds_noise_of_std_noise_std_plus_slope_times_t():
    process = DegradationProcess(identity, noise_std=0.1, noise_slope=0.5)
    x = torch.zeros(4000, 1, 2, 2)
    t = torch.cat([torch.zeros(2000), torch.ones(2000)]).double()
    xt = process.corrupt(x, t, torch.Generator().manual_seed(0))
    assert float(xt[:2000].std()) == pytest.approx(0.1, rel=0.05)
    assert float(xt[2000:].std()) == pytest.approx(0.6, rel=0.05)


def test_a_residual_restorer_adds_its_input_back():
    process = DegradationProcess(identity, residual=True)
    net = lambda x, t: -0.25 * x  # noqa: E731
    x = torch.ones(2, 1, 3, 3)
    torch.testing.assert_close(process.denoiser(net)(x, torch.ones(2)), 0.75 * x)
    assert DegradationProcess(identity).denoiser(net) is net


def test_with_noise_alone_the_improved_update_is_ddim():
    """x_s = x0_hat + (s / t) (x_t - x0_hat): DDIM for noise of std slope * t."""
    x0_hat = torch.full((2, 1, 4, 4), 0.3)
    restorer = lambda x, t: x0_hat  # noqa: E731
    x1 = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    schedule = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    seen = []
    out = sample_refine(
        restorer,
        x1,
        schedule,
        degrade=identity,
        noise_level=lambda t: 2.0 * t,
        callback=lambda step, x, d: seen.append(x.clone()),
    )
    torch.testing.assert_close(seen[0], x0_hat + 0.5 * (x1 - x0_hat))
    torch.testing.assert_close(out, x0_hat)


def test_constant_noise_keeps_the_papers_improved_update():
    x0_hat = torch.full((1, 1, 6, 6), 0.2)
    restorer = lambda x, t: x0_hat  # noqa: E731
    x1 = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    schedule = torch.linspace(1.0, 0.0, 4, dtype=torch.float64)
    degrade = blur(2.0)
    plain = sample_refine(restorer, x1, schedule, degrade=degrade)
    constant = sample_refine(restorer, x1, schedule, degrade=degrade, noise_level=lambda t: 0.3)
    torch.testing.assert_close(plain, constant)
