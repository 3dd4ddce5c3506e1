"""Training for a wall-clock budget: step timing and step counts."""

import pytest
import torch
from torch import nn

from diffcore.training import TrainConfig, seconds_per_step, step_timing, steps_for_budget


def test_step_time_is_measured_on_a_copy_with_every_accumulated_pass():
    model = nn.Linear(4, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []

    def loss_fn(net, batch, generator):
        calls.append(torch.is_autocast_enabled("cpu"))
        return net(batch["x"]).square().mean()

    config = TrainConfig(steps=1, batch_size=8, grad_accum=2, precision="bf16")
    assert seconds_per_step(model, loss_fn, {"x": torch.ones(8, 4)}, config, trials=2) > 0
    assert len(calls) == (2 + 1) * 2  # warm-up + trials, each with grad_accum passes
    assert all(calls)  # timed under the autocast training will use
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_budget_becomes_a_step_count_with_a_reserve():
    assert steps_for_budget(100.0, 1.0) == 95
    assert steps_for_budget(1.0, 10.0) == 1
    with pytest.raises(ValueError, match="> 0"):
        steps_for_budget(0.0, 1.0)
    with pytest.raises(ValueError, match="reserve"):
        steps_for_budget(10.0, 1.0, reserve=1.0)


@pytest.mark.slow
def test_a_compiled_step_is_timed_compiled_and_its_compile_counts_as_startup():
    model = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 1))
    seen = []

    def loss_fn(net, batch, generator):
        seen.append(type(net).__name__)
        return net(batch).square().mean()

    config = TrainConfig(steps=1, batch_size=8, compile=True)
    timing = step_timing(model, loss_fn, torch.ones(8, 16), config, trials=2)
    assert seen == ["OptimizedModule"] * 3  # the loss sees what train's loss sees
    assert timing.first > timing.step > 0  # compiling happens in the first step
    assert timing.startup == pytest.approx(timing.first - timing.step)
