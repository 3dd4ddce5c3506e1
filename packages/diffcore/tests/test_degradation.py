"""Cold diffusion: degradations, the DegradationProcess and the refinement sampler."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from diffcore.processes.degradation import (
    DegradationProcess,
    blur,
    downsample,
    pixelate,
)
from diffcore.samplers.refine import sample_refine
from diffcore.samplers.step import Step

DEGRADATIONS = {
    "blur": blur(max_sigma=3.0),
    "downsample_bilinear": downsample(min_size=2),
    "downsample_nearest": downsample(min_size=2, mode="nearest"),
    "pixelate": pixelate(max_block=6),
}
SCHEDULE = torch.linspace(1.0, 0.0, 11)  # 10 steps


def images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def full(batch: int, t: float) -> torch.Tensor:
    return torch.full((batch,), t)


def total_variation(x: torch.Tensor) -> float:
    return float(x.diff(dim=2).abs().mean() + x.diff(dim=3).abs().mean())


class ConstantRestorer:
    """The exact restorer for a data set of one image: whatever it sees, it returns that image.
    Records every call."""

    def __init__(self, image: torch.Tensor) -> None:
        self.image, self.calls = image, []

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        self.calls.append((x.clone(), t.clone()))
        return self.image.expand_as(x).clone()


# --- degradations ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
@pytest.mark.parametrize("size", [(7, 5), (16, 16), (1, 9)])
def test_every_degradation_is_exactly_the_identity_at_zero_severity(name, size):
    x = images(3, 2, *size)
    assert torch.equal(DEGRADATIONS[name](x, full(3, 0.0)), x)


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_total_variation_falls_as_severity_grows(name):
    x = images(2, 3, 31, 27)
    tvs = [total_variation(DEGRADATIONS[name](x, full(2, float(t)))) for t in SCHEDULE.flip(0)]
    assert all(b <= a for a, b in zip(tvs, tvs[1:], strict=False)), tvs
    assert tvs[0] > tvs[5] > tvs[-1], tvs


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
@pytest.mark.parametrize("size", [(7, 5), (9, 13), (1, 1), (2, 11)])
def test_shapes_and_dtype_are_kept_for_any_size(name, size):
    x = images(4, 3, *size).double()
    out = DEGRADATIONS[name](x, torch.tensor([0.0, 0.3, 0.7, 1.0]))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_each_sample_is_degraded_to_its_own_severity(name):
    x = images(5, 2, 13, 10)
    t = torch.tensor([0.9, 0.0, 0.35, 1.0, 0.35])
    batched = DEGRADATIONS[name](x, t)
    for i in range(5):
        alone = DEGRADATIONS[name](x[i : i + 1], t[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], alone, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_a_constant_image_stays_that_constant_at_full_severity(name):
    x = torch.full((2, 3, 9, 7), 0.37)
    torch.testing.assert_close(DEGRADATIONS[name](x, full(2, 1.0)), x, rtol=0, atol=1e-6)


def test_downsample_to_one_pixel_and_image_sized_blocks_give_the_channel_means():
    x = images(2, 3, 9, 6)
    means = x.mean((2, 3), keepdim=True).expand_as(x)
    for degrade in (downsample(min_size=1), pixelate(max_block=16)):
        torch.testing.assert_close(degrade(x, full(2, 1.0)), means, rtol=0, atol=1e-6)


def test_pixelate_averages_top_left_aligned_blocks_and_partial_edge_blocks():
    x = images(1, 1, 5, 5)
    out = pixelate(max_block=2)(x, full(1, 1.0))
    expected = torch.empty_like(x)
    for r0 in range(0, 5, 2):
        for c0 in range(0, 5, 2):
            block = x[..., r0 : r0 + 2, c0 : c0 + 2]  # 1x2, 2x1 or 1x1 at the edges
            expected[..., r0 : r0 + 2, c0 : c0 + 2] = block.mean()
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_nearest_downsample_by_a_whole_factor_equals_pixelation():
    x = images(2, 3, 8, 8)
    torch.testing.assert_close(
        downsample(min_size=2, mode="nearest")(x, full(2, 1.0)),
        pixelate(max_block=4)(x, full(2, 1.0)),
        rtol=0,
        atol=1e-6,
    )


def test_blur_of_an_impulse_is_the_sampled_gaussian_kernel():
    x = torch.zeros(1, 1, 21, 21, dtype=torch.float64)
    x[..., 10, 10] = 1.0
    sigma = 2.0 * 0.6
    radius = math.ceil(3 * sigma)
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(k**2) / (2 * sigma**2))
    g = g / g.sum()
    expected = torch.zeros_like(x)
    expected[..., 10 - radius : 11 + radius, 10 - radius : 11 + radius] = torch.outer(g, g)
    torch.testing.assert_close(blur(max_sigma=2.0)(x, full(1, 0.6)), expected)


def test_blur_reflects_at_the_borders():
    x = torch.zeros(1, 1, 1, 7, dtype=torch.float64)
    x[..., 0] = 1.0  # an impulse on the border: reflection keeps its whole mass inside
    out = blur(max_sigma=1.0)(x, full(1, 1.0))
    g = torch.exp(-(torch.arange(0, 4, dtype=torch.float64) ** 2) / 2)
    g = g / (g[0] + 2 * g[1:].sum())
    torch.testing.assert_close(out[0, 0, 0, :4], g)


@pytest.mark.parametrize(
    "x, t, error, message",
    [
        (images(2, 3, 8, 8), torch.tensor([0.5, 1.5]), ValueError, r"\[0, 1\]"),
        (images(2, 3, 8, 8), torch.tensor([-0.1, 0.5]), ValueError, r"\[0, 1\]"),
        (images(2, 3, 8, 8), torch.tensor([float("nan"), 0.5]), ValueError, r"\[0, 1\]"),
        (images(2, 3, 8, 8), torch.tensor([0.5, 0.5, 0.5]), ValueError, r"shape \(B,\)"),
        (images(3, 8, 8), torch.tensor([0.5, 0.5, 0.5]), ValueError, r"\(B, C, H, W\)"),
        (torch.ones(2, 3, 8, 8, dtype=torch.long), full(2, 0.5), TypeError, "floating"),
    ],
)
@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_bad_degradation_inputs_are_rejected(name, x, t, error, message):
    with pytest.raises(error, match=message):
        DEGRADATIONS[name](x, t)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: blur(max_sigma=0.0), "max_sigma"),
        (lambda: blur(max_sigma=float("nan")), "max_sigma"),
        (lambda: downsample(min_size=0), "min_size"),
        (lambda: downsample(min_size=2.5), "min_size"),
        (lambda: downsample(min_size=2, mode="bicubic"), "mode"),
        (lambda: pixelate(max_block=0), "max_block"),
        (lambda: DegradationProcess(blur(), noise_std=-1.0), "noise_std"),
        (lambda: DegradationProcess(blur(), loss_norm="l3"), "loss_norm"),
        (lambda: DegradationProcess(blur(), t_min=1.0), "t_min"),
    ],
)
def test_bad_settings_are_rejected_with_their_name(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_process_needs_a_callable_degradation():
    with pytest.raises(TypeError, match="degrade must be a callable"):
        DegradationProcess("blur")


# --- the process -----------------------------------------------------------------------------


def test_corrupt_is_the_degradation_plus_noise_drawn_from_the_generator():
    x, t = images(3, 2, 8, 8), torch.tensor([0.2, 0.5, 1.0])
    degrade = blur(max_sigma=2.0)
    assert torch.equal(DegradationProcess(degrade).corrupt(x, t), degrade(x, t))
    noisy = DegradationProcess(degrade, noise_std=0.05)
    out = noisy.corrupt(x, t, torch.Generator().manual_seed(4))
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(out, degrade(x, t) + 0.05 * eps)
    again = noisy.corrupt(x, t, torch.Generator().manual_seed(4))
    assert torch.equal(out, again)


def test_training_severities_are_stratified_over_the_range():
    t = DegradationProcess(blur(), t_min=0.2).sample_time(8, torch.Generator().manual_seed(0))
    assert t.shape == (8,)
    strata = ((t - 0.2) / 0.8 * 8).floor().sort().values  # one draw in each eighth of [0.2, 1]
    assert torch.equal(strata, torch.arange(8, dtype=t.dtype))


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_loss_is_the_mean_error_of_the_restoration(norm):
    x = images(4, 2, 8, 8)
    process = DegradationProcess(pixelate(max_block=4), loss_norm=norm)
    seen = {}

    def halve(xt, t, *, scale):
        seen.update(xt=xt, t=t)
        return scale * xt

    loss = process.loss(halve, x, torch.Generator().manual_seed(1), scale=0.5)
    t = process.sample_time(4, torch.Generator().manual_seed(1))
    assert seen["t"].dtype == torch.float32 and torch.equal(seen["t"], t.float())
    assert torch.equal(seen["xt"], process.degrade(x, t))
    err = 0.5 * seen["xt"] - x
    expected = err.abs().mean() if norm == "l1" else err.pow(2).mean()
    torch.testing.assert_close(loss, expected)


class TinyRestorer(torch.nn.Module):
    """x + conv(silu(conv([x, t]))): two 3x3 convs that see the severity as an extra channel. The
    last one starts at zero, so the untrained restorer returns its input unchanged."""

    def __init__(self, channels: int, hidden: int = 8) -> None:
        super().__init__()
        self.inner = torch.nn.Conv2d(channels + 1, hidden, 3, padding=1, padding_mode="reflect")
        self.outer = torch.nn.Conv2d(hidden, channels, 3, padding=1, padding_mode="reflect")
        torch.nn.init.zeros_(self.outer.weight)
        torch.nn.init.zeros_(self.outer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        level = t.reshape(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:]).to(x)
        hidden = torch.nn.functional.silu(self.inner(torch.cat([x, level], 1)))
        return x + self.outer(hidden)


def test_a_tiny_conv_restorer_learns_to_undo_blur_better_than_doing_nothing():
    torch.manual_seed(0)
    # Blocky random images: sharp edges that blur smears and a small conv net can re-sharpen.
    data = torch.nn.functional.interpolate(images(8, 1, 8, 8), size=16, mode="nearest")
    process = DegradationProcess(blur(max_sigma=1.0), loss_norm="l2")
    net = TinyRestorer(1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)

    def held_out_loss() -> float:
        with torch.no_grad():
            return float(process.loss(net, data, torch.Generator().manual_seed(99)))

    do_nothing = held_out_loss()
    gen = torch.Generator().manual_seed(1)
    for _ in range(100):
        opt.zero_grad()
        process.loss(net, data, gen).backward()
        opt.step()
    assert held_out_loss() < 0.7 * do_nothing


# --- the refinement sampler ------------------------------------------------------------------


@pytest.mark.parametrize("update", ["improved", "naive"])
@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_the_exact_restorer_brings_back_its_image_exactly(name, update):
    degrade = DEGRADATIONS[name]
    image = images(1, 3, 9, 7)
    restorer = ConstantRestorer(image)
    states = []
    out = sample_refine(
        restorer,
        degrade(image.expand(2, -1, -1, -1), full(2, 1.0)),
        SCHEDULE,
        degrade=degrade,
        update=update,
        callback=lambda step, x, x0: states.append((step.level_next, x)),
    )
    assert torch.equal(out, image.expand(2, -1, -1, -1))
    for level, x in states:  # every intermediate state is the image degraded to its level
        assert torch.equal(x, degrade(image, full(1, level)).expand(2, -1, -1, -1))


def test_improved_update_cancels_any_restorer_error_for_additive_degradations():
    """Cold Diffusion's case for Algorithm 2: for D(x, t) = x + t e it lands on D(x0, s) at every
    step whatever the restorer returns; Algorithm 1 returns the restorer's last guess."""
    e = images(1, 2, 6, 6, seed=1)

    def add_pattern(x, t):
        return x + t.reshape(-1, 1, 1, 1) * e

    x0 = images(3, 2, 6, 6, seed=2)
    wrong = ConstantRestorer(torch.zeros(1, 2, 6, 6))
    start = add_pattern(x0, full(3, 1.0))
    improved = sample_refine(wrong, start, SCHEDULE, degrade=add_pattern)
    torch.testing.assert_close(improved, x0)
    naive = sample_refine(wrong, start, SCHEDULE, degrade=add_pattern, update="naive")
    assert torch.equal(naive, torch.zeros_like(x0))


def test_img2img_runs_only_the_tail_of_the_schedule_from_the_degraded_init():
    degrade = blur(max_sigma=2.0)
    x_init = images(2, 3, 8, 8)
    restorer = ConstantRestorer(images(1, 3, 8, 8, seed=5))
    sample_refine(
        restorer, torch.zeros(2, 3, 8, 8), SCHEDULE, degrade=degrade, x_init=x_init, t_start=0.3
    )
    assert len(restorer.calls) == 3  # 30% of 10 steps
    first_x, first_t = restorer.calls[0]
    level = float(SCHEDULE[7])
    assert torch.equal(first_t, full(2, level))
    assert torch.equal(first_x, degrade(x_init, full(2, level)))


def test_full_strength_img2img_runs_every_step():
    restorer = ConstantRestorer(images(1, 1, 4, 4))
    x = images(2, 1, 4, 4)
    sample_refine(restorer, x, SCHEDULE, degrade=blur(), x_init=x, t_start=1.0)
    assert len(restorer.calls) == 10


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_known_entries_are_kept_exactly_and_degraded_with_their_context(name):
    degrade = DEGRADATIONS[name]
    known = images(2, 3, 9, 8, seed=3)
    mask = images(1, 1, 9, 8, seed=4) < 0.4  # broadcast over batch and channels
    restorer = ConstantRestorer(images(1, 3, 9, 8, seed=5))
    full_mask = mask.expand_as(known)
    seen = []

    def check(step, x, x0_hat):
        seen.append(step.index)
        assert torch.equal(x0_hat[full_mask], known[full_mask])
        expected = degrade(x0_hat, full(2, step.level_next)) if step.level_next > 0 else x0_hat
        assert torch.equal(x[full_mask], expected[full_mask])

    start = degrade(images(2, 3, 9, 8, seed=6), full(2, 1.0))
    out = sample_refine(
        restorer, start, SCHEDULE, degrade=degrade, known=known, mask=mask, callback=check
    )
    assert seen == list(range(10))
    assert torch.equal(out[full_mask], known[full_mask])
    first_x, _ = restorer.calls[0]  # the known part already speaks at the first step
    assert not torch.equal(first_x, start)


def test_img2img_and_known_entries_combine():
    degrade = downsample(min_size=2)
    x_init, known = images(2, 1, 6, 6, seed=7), images(2, 1, 6, 6, seed=8)
    mask = torch.zeros(2, 1, 6, 6, dtype=torch.bool)
    mask[..., :3, :] = True
    restorer = ConstantRestorer(images(1, 1, 6, 6, seed=9))
    out = sample_refine(
        restorer,
        torch.zeros(2, 1, 6, 6),
        SCHEDULE,
        degrade=degrade,
        x_init=x_init,
        t_start=0.5,
        known=known,
        mask=mask,
    )
    assert len(restorer.calls) == 5
    # the start is the init with its known part pasted in, degraded as one image
    composite = torch.where(mask, known, x_init)
    assert torch.equal(restorer.calls[0][0], degrade(composite, full(2, float(SCHEDULE[5]))))
    assert torch.equal(out[mask], known[mask])


def test_callback_is_called_once_per_step_with_the_levels():
    seen: list[Step] = []
    restorer = ConstantRestorer(images(1, 1, 5, 5))
    sample_refine(
        restorer,
        images(2, 1, 5, 5),
        SCHEDULE,
        degrade=pixelate(4),
        callback=lambda step, x, x0: seen.append(step),
    )
    assert [s.index for s in seen] == list(range(10))
    assert all(s.total == 10 for s in seen)
    assert [s.level for s in seen] == pytest.approx(SCHEDULE[:-1].tolist())
    assert [s.level_next for s in seen] == pytest.approx(SCHEDULE[1:].tolist())
    assert seen[-1].level_next == 0.0


def test_sample_refine_has_the_common_sampler_signature():
    params = inspect.signature(sample_refine).parameters.values()
    positional = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_ONLY]
    keywords = {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert positional == ["restorer", "x", "schedule"]
    assert {"generator", "callback", "degrade", "x_init", "t_start", "known", "mask"} <= keywords


@pytest.mark.parametrize(
    "schedule, options, message",
    [
        (torch.tensor([1.0, 0.5]), {}, "end at severity = 0"),
        (torch.tensor([0.5, 1.0, 0.0]), {}, "decrease"),
        (torch.tensor([2.0, 1.0, 0.0]), {}, r"\[0, 1\]"),
        (torch.tensor([[1.0, 0.0]]), {}, "1-D"),
        (SCHEDULE, {"t_start": 0.5}, "x_init and t_start"),
        (SCHEDULE, {"x_init": torch.zeros(2, 1, 4, 4)}, "x_init and t_start"),
        (SCHEDULE, {"x_init": torch.zeros(2, 1, 4, 4), "t_start": 0.0}, "t_start"),
        (SCHEDULE, {"x_init": torch.zeros(1, 1, 4, 4), "t_start": 0.5}, "x_init must be shaped"),
        (SCHEDULE, {"known": torch.zeros(2, 1, 4, 4)}, "known and mask"),
        (SCHEDULE, {"update": "fancy"}, "update"),
    ],
)
def test_bad_sampler_arguments_are_rejected(schedule, options, message):
    restorer = ConstantRestorer(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match=message):
        sample_refine(restorer, torch.zeros(2, 1, 4, 4), schedule, degrade=blur(), **options)
    assert restorer.calls == []
