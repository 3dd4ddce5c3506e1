"""Experts per noise level: a process trained on a range of times, and models composed by
noise level, which with exact denoisers per range reproduce the single exact denoiser."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diffcore.generation import check_experts, expert_denoiser
from diffcore.processes import GaussianProcess, flow_matching
from diffcore.samplers import sample_dpmpp_2m, sample_unipc
from diffcore.schedules import CosineSchedule, karras_grid
from diffcore.toys import uneven_mixture

MIX = uneven_mixture()


@dataclasses.dataclass(frozen=True)
class ExactProcess(GaussianProcess):
    """A process whose "trained network" is the mixture's exact denoiser, logging its levels."""

    def denoiser(self, net):
        def exact(x, sigma, **cond):
            net.seen.append(torch.as_tensor(sigma).expand(x.shape[0]).clone())
            return MIX.denoise(x, sigma)

        return exact


class Expert:
    def __init__(self, t_min: float, t_max: float) -> None:
        self.process = ExactProcess(CosineSchedule(), t_min=t_min, t_max=t_max)
        self.seen: list[torch.Tensor] = []


def test_a_range_of_times_trains_only_there_with_either_time_sampling():
    for process in (
        GaussianProcess(CosineSchedule(), t_min=0.3, t_max=0.6),
        flow_matching(t_min=0.3, t_max=0.6),
    ):
        t = process.sample_time(4096, torch.Generator().manual_seed(0))
        assert float(t.min()) >= 0.3 and float(t.max()) <= 0.6
        assert float(t.max() - t.min()) > 0.28  # the whole range, not a clamped corner
    lo, hi = GaussianProcess(CosineSchedule(), t_min=0.3, t_max=0.6).noise_range
    assert lo == pytest.approx(float(CosineSchedule().sigma(0.3)))
    assert hi == pytest.approx(float(CosineSchedule().sigma(0.6)))
    with pytest.raises(ValueError, match="t_min < t_max"):
        GaussianProcess(t_min=0.6, t_max=0.3)


@pytest.mark.parametrize("sampler", [sample_dpmpp_2m, sample_unipc])
def test_exact_experts_per_range_reproduce_the_exact_denoiser(sampler):
    experts = [Expert(0.5, 1.0), Expert(1e-3, 0.2), Expert(0.2, 0.5)]
    noise = torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = karras_grid(12, 0.002, 20.0)
    composed = sampler(expert_denoiser(experts), noise, grid)
    torch.testing.assert_close(composed, sampler(MIX, noise, grid), rtol=0, atol=0)
    for expert in experts:  # each saw only the levels of its own range (the lowest also those
        seen = torch.cat(expert.seen)  # below its training range), and saw some
        lo, hi = expert.process.noise_range
        assert len(seen) and (expert.process.t_min < 0.01 or bool((seen >= lo).all()))
        assert expert.process.t_max == 1.0 or bool((seen < hi).all())


def test_experts_must_tile_the_times_on_one_schedule():
    check_experts([Expert(1e-3, 0.4), Expert(0.4, 1.0)])
    for ranges in (
        [(1e-3, 0.4), (0.5, 1.0)],
        [(0.1, 1.0)],
        [(1e-3, 0.9)],
        [(1e-3, 0.6), (0.4, 1.0)],
    ):
        with pytest.raises(ValueError, match="split the times"):
            check_experts([Expert(*r) for r in ranges])
    other = Expert(0.4, 1.0)
    other.process = ExactProcess(CosineSchedule(logsnr_min=-12), t_min=0.4, t_max=1.0)
    with pytest.raises(ValueError, match="one noise schedule"):
        check_experts([Expert(1e-3, 0.4), other])


# tokens: experts per range of masked shares


class SeenShares:
    """A token denoiser that records the masked share of every row it is given and predicts
    uniform logits (the loss then depends only on which tokens are masked)."""

    def __init__(self, vocab: int, mask_id: int) -> None:
        self.vocab, self.mask_id, self.shares = vocab, mask_id, []

    def __call__(self, x, t, **cond):
        self.shares.append((x == self.mask_id).double().mean(1))
        return torch.zeros(*x.shape, self.vocab)


@pytest.mark.parametrize("estimator", ["count", "time"])
def test_a_masking_expert_trains_only_on_its_range_of_masked_shares(estimator):
    from diffcore.processes import MaskProcess

    tokens = torch.randint(0, 7, (64, 40), generator=torch.Generator().manual_seed(0))
    process = MaskProcess(7, 8, estimator=estimator, mask_range=(0.25, 0.5))
    net = SeenShares(8, 7)
    for seed in range(8):
        process.loss(net, tokens, torch.Generator().manual_seed(seed))
    shares = torch.cat(net.shares)
    slack = 0.0 if estimator == "count" else 0.2  # "time" masks each token with probability t
    assert float(shares.min()) >= 0.25 - slack and float(shares.max()) <= 0.5 + slack
    assert float(shares.max() - shares.min()) > 0.2  # the whole range, not one share
    with pytest.raises(ValueError, match="mask_range"):
        MaskProcess(7, 8, mask_range=(0.5, 0.5))
    with pytest.raises(ValueError, match="complementary"):
        MaskProcess(7, 8, estimator="complementary", mask_range=(0.0, 0.5))


def test_the_whole_range_of_masked_shares_keeps_the_loss_draw_for_draw():
    from diffcore.processes import MaskProcess

    tokens = torch.randint(0, 7, (16, 30), generator=torch.Generator().manual_seed(1))
    logits = torch.randn(16, 30, 8, generator=torch.Generator().manual_seed(2))
    net = lambda x, t, **c: logits  # noqa: E731
    a = MaskProcess(7, 8).loss(net, tokens, torch.Generator().manual_seed(3))
    b = MaskProcess(7, 8, mask_range=(0.0, 1.0)).loss(net, tokens, torch.Generator().manual_seed(3))
    assert float(a) == float(b)


@pytest.mark.parametrize("sampler", ["confidence", "masked_ancestral"])
def test_exact_token_experts_per_range_reproduce_the_exact_denoiser(sampler):
    from diffcore.generation import mask_experts
    from diffcore.processes.mask import linear_mask_grid
    from diffcore.samplers import DISCRETE_SAMPLERS
    from diffcore.toys import MarkovChainTokens

    init = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    trans = torch.tensor([[0.6, 0.2, 0.2], [0.3, 0.4, 0.3], [0.2, 0.3, 0.5]], dtype=torch.float64)
    exact = MarkovChainTokens(init, trans, 4)
    seen = {}

    def expert(name):
        def call(x, t):
            seen.setdefault(name, []).append(t.clone())
            return exact(x, t)

        return call

    ranges = [(0.6, 1.0), (0.0, 0.3), (0.3, 0.6)]  # the grid 1, 0.75, 0.5, 0.25: all called
    composed = mask_experts([expert(i) for i in range(3)], ranges)
    start = torch.full((300, 4), exact.mask_id)
    run = DISCRETE_SAMPLERS[sampler]

    def draw(denoiser):
        g = torch.Generator().manual_seed(0)
        return run(denoiser, start, linear_mask_grid(4), generator=g, mask_id=exact.mask_id)

    assert torch.equal(draw(composed), draw(exact))
    for i, (lo, hi) in enumerate(ranges):  # each expert answered only the shares it learned
        t = torch.cat(seen[i])
        assert float(t.min()) >= lo and (float(t.max()) < hi or hi == 1.0)
    with pytest.raises(ValueError, match="split the times"):
        mask_experts([exact, exact], [(0.0, 0.5), (0.6, 1.0)])
    with pytest.raises(ValueError, match="split the times"):
        mask_experts([exact], [(0.5, 1.0)])  # a lone expert cannot generate
