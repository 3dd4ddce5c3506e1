"""The generation tier: sampler choice and options, per-sample seeds (results independent of the
batch size), guidance, editing and inpainting, token fills and block models, save and load."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn

from diffcore.generation import (
    ContinuousOptions,
    ContinuousPipeline,
    TokenOptions,
    TokenPipeline,
    remask,
    sampler_names,
)
from diffcore.processes import GaussianProcess
from diffcore.samplers import sample_confidence
from diffcore.schedules import CosineSchedule
from diffcore.seeding import SampleGenerators, rand_rows, randn, sample_seeds

# A continuous toy: a small conv net over (2, 4, 4) samples with a class label.


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    classes: int = 3
    width: int = 8


class ToyNet(nn.Module):
    config_class: ClassVar = ToyConfig

    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.classes + 1, config.width)
        self.inp = nn.Conv2d(2, config.width, 3, padding=1)
        self.out = nn.Conv2d(config.width, 2, 3, padding=1)
        self.process = GaussianProcess(CosineSchedule(), prediction="v")

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        h = self.inp(x) + t.reshape(-1, 1, 1, 1)
        if labels is not None:
            h = h + self.embed(labels)[:, :, None, None]
        return self.out(torch.tanh(h))


class ToyPipeline(ContinuousPipeline):
    model_class = ToyNet

    def sample_shape(self) -> tuple[int, ...]:
        return (2, 4, 4)

    def conditions(self, n: int, labels: Any = None) -> tuple[dict, dict]:
        if labels is None:
            return {}, {}
        labels = torch.as_tensor(labels, dtype=torch.long, device=self.device)
        null = torch.full_like(labels, self.model.config.classes)
        return {"labels": labels}, {"labels": null}


@pytest.fixture(scope="module")
def toy() -> ToyPipeline:
    torch.manual_seed(0)
    return ToyPipeline(ToyNet(ToyConfig()))


@pytest.mark.parametrize("sampler", sampler_names("continuous"))
def test_continuous_samples_do_not_depend_on_the_batch_size(toy, sampler):
    labels = torch.tensor([0, 1, 2, 0, 1])
    one = toy.sample(5, sampler=sampler, steps=4, seed=3, batch_size=1, labels=labels, guidance=2.0)
    eight = toy.sample(
        5, sampler=sampler, steps=4, seed=3, batch_size=8, labels=labels, guidance=2.0
    )
    torch.testing.assert_close(one, eight, rtol=1e-5, atol=1e-5)
    assert one.shape == (5, 2, 4, 4)
    assert not torch.allclose(one, toy.sample(5, sampler=sampler, steps=4, seed=4, labels=labels))


def test_the_first_samples_of_a_run_are_those_of_a_shorter_run(toy):
    torch.testing.assert_close(toy.sample(2, seed=1, steps=3), toy.sample(6, seed=1, steps=3)[:2])


def test_edit_and_inpaint_do_not_depend_on_the_batch_size_and_inpaint_keeps_the_rest(toy):
    x = torch.rand(4, 2, 4, 4) * 2 - 1
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[..., :2] = True
    for kwargs in ({"strength": 0.4}, {"mask": mask}):
        run = toy.edit if "strength" in kwargs else toy.inpaint
        a = run(x, **kwargs, sampler="ddpm", steps=5, seed=0, batch_size=1)
        b = run(x, **kwargs, sampler="ddpm", steps=5, seed=0, batch_size=3)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    kept = ~mask.expand_as(x)
    assert torch.equal(a[kept], x[kept]) and not torch.equal(a[~kept], x[~kept])


def test_sampler_options_reach_the_sampler_and_unknown_ones_are_refused(toy):
    eta0 = toy.sample(2, sampler="ddim", steps=4, options={"eta": 0.0})
    eta1 = toy.sample(2, sampler="ddim", steps=4, options={"eta": 1.0})
    assert not torch.allclose(eta0, eta1)
    with pytest.raises(ValueError, match="takes no option 'eta'"):
        toy.sample(2, sampler="dpmpp_2m", options={"eta": 1.0})
    with pytest.raises(ValueError, match="takes no option 'generator'"):
        toy.sample(2, sampler="ddim", options={"generator": None})
    with pytest.raises(ValueError, match="unknown continuous sampler 'nope'"):
        toy.sample(2, sampler="nope")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        toy.sample(2, steps=0)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        toy.sample(0)
    with pytest.raises(TypeError, match="unexpected keyword argument.*setps"):
        toy.plan({"setps": 3})
    with pytest.raises(ValueError, match="takes no conditions"):
        ContinuousPipeline.conditions(toy, 2, colour="red")


def test_options_record_their_settings_and_the_grid_travels_in_options():
    plan = ContinuousOptions.build("ddim", 10, 2.0, {"eta": 0.5, "grid": "karras"})
    assert plan.record() == {
        "sampler": "ddim",
        "steps": 10,
        "guidance": 2.0,
        "grid": "karras",
        "eta": 0.5,
    }
    assert TokenOptions.build(None, None, 1.0, None).sampler == "confidence"
    with pytest.raises(ValueError, match="grid must be one of linear, cosine"):
        TokenOptions.build("confidence", None, 1.0, {"grid": "karras"})


def test_guidance_one_is_the_plain_conditional_model(toy):
    labels = torch.tensor([1, 2])
    plain = toy.sample(2, steps=3, labels=labels, guidance=1.0)
    guided = toy.sample(2, steps=3, labels=labels, guidance=3.0)
    assert not torch.allclose(plain, guided)


def test_a_pipeline_saves_and_loads_back_the_same_model(toy, tmp_path):
    folder = toy.save_pretrained(tmp_path / "toy")
    again = ToyPipeline.from_pretrained(folder)
    torch.testing.assert_close(again.sample(3, steps=3), toy.sample(3, steps=3))


# A token toy: logits from each token and its neighbours; token 0 is the mask.


@dataclasses.dataclass(frozen=True)
class TokenToyConfig:
    vocab: int = 7
    families: int = 2


class TokenToyNet(nn.Module):
    config_class: ClassVar = TokenToyConfig

    def __init__(self, config: TokenToyConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab, 16)
        self.family = nn.Embedding(config.families + 1, 16)
        self.mix = nn.Conv1d(16, 16, 3, padding=1)
        self.out = nn.Linear(16, config.vocab)

    def forward(self, x: Tensor, t: Tensor, family: Tensor) -> Tensor:
        h = self.embed(x) + self.family(family)[:, None]
        return self.out(torch.tanh(self.mix(h.transpose(1, 2)).transpose(1, 2)))


class TokenToyPipeline(TokenPipeline):
    model_class = TokenToyNet
    block: int | None = None

    @property
    def mask_id(self) -> int:
        return 0

    @property
    def diffusion_block(self) -> int | None:
        return self.block

    def denoiser(self, x: Tensor, conditions: dict, scale: float) -> Any:
        from diffcore.denoisers import condition, guidance

        family = conditions["family"]
        if scale != 1.0:
            null = torch.full_like(family, self.model.config.families)
            return guidance(self.model, scale, {"family": family}, {"family": null})
        return condition(self.model, family=family)


@pytest.fixture(scope="module")
def tokens() -> TokenToyPipeline:
    torch.manual_seed(0)
    return TokenToyPipeline(TokenToyNet(TokenToyConfig()))


def _jobs() -> tuple[list[Tensor], dict[str, Tensor]]:
    """Six sequences: three lengths, one with a fixed token (a motif or a prompt)."""
    lengths = [5, 8, 5, 12, 8, 5]
    rows = [torch.zeros(k, dtype=torch.long) for k in lengths]
    rows[2][1] = 3
    return rows, {"family": torch.tensor([0, 1, 0, 1, 0, 1])}


@pytest.mark.parametrize(
    "sampler, options",
    [
        ("masked_ancestral", {}),
        ("confidence", {}),
        ("confidence", {"confidence": "entropy", "entropy_bound": 0.5, "top_p": 0.9}),
    ],
)
def test_token_fills_do_not_depend_on_the_batch_size(tokens, sampler, options):
    rows, cond = _jobs()
    plan, _ = tokens.plan({"sampler": sampler, "guidance": 2.0, "options": options})
    one = tokens.fill(rows, conditions=cond, plan=plan, seed=5, batch_size=1)
    eight = tokens.fill(rows, conditions=cond, plan=plan, seed=5, batch_size=8)
    assert all(torch.equal(a, b) for a, b in zip(one, eight, strict=True))
    assert [len(r) for r in one] == [5, 8, 5, 12, 8, 5]
    assert all(bool((r != 0).all()) for r in one) and one[2][1] == 3


def test_a_block_model_fills_block_by_block_at_any_batch_size(tokens):
    rows, cond = _jobs()
    tokens.block = 4
    try:
        plan, _ = tokens.plan({"steps": 3})  # rounded up to a multiple of the blocks
        one = tokens.fill(rows, conditions=cond, plan=plan, batch_size=1)
        many = tokens.fill(rows, conditions=cond, plan=plan, batch_size=4)
        assert all(torch.equal(a, b) for a, b in zip(one, many, strict=True))
        with pytest.raises(ValueError, match="use the confidence sampler"):
            tokens.fill(rows, conditions=cond, plan=tokens.plan({"sampler": "masked_ancestral"})[0])
    finally:
        tokens.block = None


def test_remask_hides_a_share_of_the_editable_positions_by_each_samples_seed():
    rows = [torch.arange(1, 11), torch.arange(1, 21)]
    editable = [torch.arange(10) >= 2, torch.ones(20, dtype=torch.bool)]
    out = remask(rows, 0.5, 0, seed=1, editable=editable)
    assert [int((r == 0).sum()) for r in out] == [4, 10]
    assert torch.equal(out[0][:2], rows[0][:2])
    again = remask(rows[:1], 0.5, 0, seed=1, editable=editable[:1])
    assert torch.equal(again[0], out[0])


def test_per_sample_generators_draw_each_row_from_its_own_seed():
    seeds = sample_seeds(7, 4)
    assert seeds[:2] == sample_seeds(7, 2) and len(set(seeds)) == 4
    full = randn((4, 3), SampleGenerators(seeds))
    alone = randn((1, 3), SampleGenerators(seeds[2:3]))
    torch.testing.assert_close(full[2:3], alone)
    selected = torch.tensor([[True, False, True], [False, True, False]])
    drawn = rand_rows(selected, 5, SampleGenerators(seeds[:2]))
    second = rand_rows(selected[1:], 5, SampleGenerators(seeds[1:2]))
    assert drawn.shape == (3, 5) and torch.equal(drawn[2:], second)
    with pytest.raises(ValueError, match="give one per row"):
        randn((3, 2), SampleGenerators(seeds[:2]))


def test_one_generator_for_the_batch_draws_what_torch_rand_draws():
    """Seeded runs from before per-sample generators reproduce exactly."""
    masked = torch.ones(2, 6, dtype=torch.bool)
    first = torch.rand((12, 5), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    drawn = rand_rows(masked, 5, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(drawn, first)


def test_a_sampler_takes_per_sample_generators_directly():
    logits = torch.randn(3, 6, 5)
    denoiser = lambda x, t: logits[: len(x)]
    grid = torch.linspace(1, 0, 7)
    seeds = sample_seeds(0, 3)
    x = torch.zeros(3, 6, dtype=torch.long)
    both = sample_confidence(denoiser, x, grid, generator=SampleGenerators(seeds), mask_id=0)
    first = sample_confidence(
        denoiser, x[:1], grid, generator=SampleGenerators(seeds[:1]), mask_id=0
    )
    assert torch.equal(both[:1], first)


def test_grids_decrease_to_zero_and_call_budgets_fit(toy):
    from diffcore.generation import network_calls, sampling_grid, steps_for_calls

    for sampler in ("ddpm", "dpmpp_2m", "heun"):
        grid = sampling_grid(toy.model.process, sampler, 10)
        assert grid.shape == (11,) and grid[-1] == 0 and (grid[:-1] > grid[1:]).all()
    karras = sampling_grid(toy.model.process, "ddpm", 10, grid="karras", sigma_min=0.01)
    assert float(karras[-2]) == pytest.approx(0.01)
    assert network_calls("heun", steps_for_calls("heun", 10)) <= 10
    assert network_calls("dpmpp_2m", steps_for_calls("dpmpp_2m", 20)) == 20


def test_a_model_folder_can_carry_its_default_sampler_and_steps(tmp_path):
    """A distilled model samples well only at its own step count: its folder's sampling.json
    says so, and calls that name no sampler or steps follow it; explicit keywords win."""
    torch.manual_seed(0)
    defaults = {"sampler": "ddim", "steps": 3, "options": {"grid": "karras"}}
    pipe = ToyPipeline(ToyNet(ToyConfig()), sampling=defaults)
    steps = []
    default = pipe.sample(2, seed=1, callback=lambda step, x, d: steps.append(step.total))
    assert set(steps) == {3}
    explicit = pipe.sample(2, seed=1, sampler="ddim", steps=3, options={"grid": "karras"})
    torch.testing.assert_close(default, explicit)
    plan, _ = pipe.plan({"steps": 5})
    assert (plan.sampler, plan.steps, plan.grid) == ("ddim", 5, "karras")
    plan, _ = pipe.plan({"sampler": "euler"})  # another sampler keeps the grid and steps
    assert (plan.sampler, plan.steps, plan.grid) == ("euler", 3, "karras")

    folder = pipe.save_pretrained(tmp_path / "model")
    loaded = ToyPipeline.from_pretrained(folder)
    assert loaded.sampling_defaults == defaults
    torch.testing.assert_close(loaded.sample(2, seed=1), default)
    (folder / "sampling.json").write_text('{"sampler": "ddim", "stpes": 3}')
    with pytest.raises(ValueError, match="stpes"):
        ToyPipeline.from_pretrained(folder)
    assert ToyPipeline(ToyNet(ToyConfig())).plan({})[0].sampler == "dpmpp_2m"


def test_a_grid_can_be_given_as_levels_and_fitted_to_the_model(toy, tmp_path):
    levels = [14.0, 3.0, 0.5, 0.05, 0.0]
    listed = toy.sample(2, seed=1, sampler="unipc", steps=4, options={"grid": levels})
    same = toy.sample(2, seed=1, sampler="unipc", steps=4, options={"grid": tuple(levels)})
    torch.testing.assert_close(listed, same)
    karras = toy.sample(2, seed=1, sampler="unipc", steps=4)
    assert not torch.allclose(listed, karras)
    with pytest.raises(ValueError, match="makes 4 steps, not 5"):
        toy.sample(2, sampler="unipc", steps=5, options={"grid": levels})
    with pytest.raises(ValueError, match="decrease"):
        toy.sample(2, sampler="unipc", steps=4, options={"grid": [1.0, 2.0, 0.5, 0.1, 0.0]})

    grid = toy.fit_grid("unipc", 4, n=8, sweeps=2, labels=[0, 1] * 4)
    assert grid.shape == (5,) and float(grid[-1]) == 0.0
    # kept as the folder's default, the fitted levels are used only at their own step count
    pipe = ToyPipeline(
        toy.model, sampling={"sampler": "unipc", "steps": 4, "options": {"grid": grid.tolist()}}
    )
    folder = pipe.save_pretrained(tmp_path / "fitted")
    loaded = ToyPipeline.from_pretrained(folder)
    assert loaded.plan({})[0].grid == tuple(grid.tolist())
    assert loaded.plan({"steps": 6})[0].grid is None
