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
