"""Discrete (masked) samplers against an exact oracle: a Markov chain small enough to enumerate."""

import inspect
import math

import pytest
import torch

from diffcore.processes.mask import cosine_mask_grid, linear_mask_grid
from diffcore.samplers.discrete import (
    DISCRETE_SAMPLERS,
    sample_confidence,
    sample_masked_ancestral,
)
from diffcore.samplers.step import Step
from diffcore.toys import MarkovChainTokens

K, L, MASK = 3, 4, 3  # symbols 0..2, sequences of 4, token 3 is the mask (vocabulary of 4)
INIT = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
TRANS = torch.tensor([[0.6, 0.2, 0.2], [0.3, 0.4, 0.3], [0.2, 0.3, 0.5]], dtype=torch.float64)


def chain(mask_logit: float = 30.0) -> MarkovChainTokens:
    """The exact TokenDenoiser of the chain (see diffcore.toys.MarkovChainTokens)."""
    return MarkovChainTokens(INIT, TRANS, L, mask_logit=mask_logit)


def index(seqs: torch.Tensor) -> torch.Tensor:
    """Row of each sequence (N, L) in the enumeration."""
    return (seqs * K ** torch.arange(seqs.shape[1] - 1, -1, -1)).sum(1)


def chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """p-value of Pearson's chi-square test of counts against probs (the upper regularized
    incomplete gamma function gives the chi-square survival function)."""
    expected = probs * counts.sum()
    stat = ((counts - expected) ** 2 / expected).sum()
    dof = torch.tensor((len(probs) - 1) / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(dof, stat / 2))


def masks(n: int, mask_id: int = MASK) -> torch.Tensor:
    return torch.full((n, L), mask_id)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TableDenoiser:
    """Ignores its input: the same logits (L, V) for every row, and counts its calls."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits, self.calls, self.seen = logits, 0, []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.seen.append(x.clone())
        return self.logits.expand(x.shape[0], -1, -1)


class Counted:
    """A denoiser that counts its calls."""

    def __init__(self, denoiser) -> None:
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.denoiser(x, t)


def peaked(confidences: list[float], vocab: int = 5) -> torch.Tensor:
    """Logits (L, vocab) where position l puts probability confidences[l] on token l % (vocab-1)
    and spreads the rest evenly over the other clean tokens; the last token is the mask."""
    rows = []
    for l, c in enumerate(confidences):
        p = torch.full((vocab - 1,), (1 - c) / (vocab - 2), dtype=torch.float64)
        p[l % (vocab - 1)] = c
        rows.append(torch.cat([p.log(), torch.tensor([0.0], dtype=torch.float64)]))
    return torch.stack(rows).float()


# --- masked ancestral sampling follows the exact distribution -----------------------------------


def test_masked_ancestral_with_many_steps_reproduces_the_distribution():
    oracle = chain()
    out = sample_masked_ancestral(
        oracle, masks(6000), linear_mask_grid(256), mask_id=MASK, generator=seeded(1)
    )
    counts = torch.bincount(index(out), minlength=K**L).double()
    assert chi_square_p(counts, oracle.probs) > 0.01


def test_one_step_samples_independent_marginals_and_fails_the_same_test():
    """Revealing every token at once draws each from its marginal: the chain's dependence is lost,
    and the same chi-square test rejects (so the test above can fail)."""
    oracle = chain()
    out = sample_masked_ancestral(
        oracle, masks(6000), linear_mask_grid(1), mask_id=MASK, generator=seeded(1)
    )
    counts = torch.bincount(index(out), minlength=K**L).double()
    assert chi_square_p(counts, oracle.probs) < 1e-6


def test_infilling_keeps_known_tokens_and_samples_the_exact_conditional():
    oracle = chain()
    known = torch.tensor([2, 0, 0, 1])
    fixed = torch.tensor([True, False, False, True])  # x = [2, ?, ?, 1]

    def check_fixed(step, x, denoised):
        assert (x[:, fixed] == known[fixed]).all() and (denoised[:, fixed] == known[fixed]).all()

    out = sample_masked_ancestral(
        oracle,
        masks(3000),
        linear_mask_grid(64),
        mask_id=MASK,
        known=known,
        mask=fixed,
        callback=check_fixed,
        generator=seeded(2),
    )
    assert (out[:, fixed] == known[fixed]).all()
    exact = oracle.posterior(torch.tensor([[2, MASK, MASK, 1]]))[0]  # (81,), 9 nonzero
    support = exact > 0
    counts = torch.bincount(index(out), minlength=K**L).double()
    assert counts[~support].sum() == 0
    assert chi_square_p(counts[support], exact[support]) > 0.01


def test_masked_ancestral_leaves_a_share_s_of_tokens_masked_after_each_step():
    """Revealing with probability (t - s) / t keeps each token masked with probability s."""
    grid, shares = cosine_mask_grid(5), []
    sample_masked_ancestral(
        chain(),
        masks(4000),
        grid,
        mask_id=MASK,
        generator=seeded(8),
        callback=lambda step, x, denoised: shares.append(float((x == MASK).double().mean())),
    )
    for s, share in zip(grid[1:].tolist(), shares, strict=True):
        assert abs(share - s) <= 4 * (s * (1 - s) / (4000 * L)) ** 0.5


@pytest.mark.parametrize("sampler", DISCRETE_SAMPLERS.values(), ids=DISCRETE_SAMPLERS.keys())
def test_top_p_draws_only_from_the_nucleus(sampler):
    table = TableDenoiser(peaked([0.5, 0.5, 0.5, 0.5]))  # each position: 0.5, then 3 x 1/6
    out = sampler(
        table, masks(200, 4), linear_mask_grid(4), mask_id=4, top_p=0.5, generator=seeded(3)
    )
    assert (out == torch.arange(L)).all()  # the top token alone reaches 0.5
    out = sampler(
        table, masks(200, 4), linear_mask_grid(4), mask_id=4, top_p=0.6, generator=seeded(3)
    )
    assert [len(out[:, l].unique()) for l in range(L)] == [2] * L  # now 2 tokens per position


def test_temperature_zero_takes_the_most_likely_token():
    table = TableDenoiser(peaked([0.4, 0.6, 0.5, 0.9]))
    for sampler in DISCRETE_SAMPLERS.values():
        out = sampler(table, masks(3, 4), linear_mask_grid(4), mask_id=4, temperature=0.0)
        assert (out == torch.arange(L)).all()


# --- properties every discrete sampler shares ----------------------------------------------------


@pytest.mark.parametrize("name", sorted(DISCRETE_SAMPLERS))
def test_output_has_no_mask_and_is_reproducible_from_the_seed(name):
    sampler, oracle = DISCRETE_SAMPLERS[name], chain(mask_logit=30.0)
    run = lambda seed: sampler(
        oracle, masks(64), cosine_mask_grid(5), mask_id=MASK, generator=seeded(seed)
    )
    first, again, other = run(0), run(0), run(1)
    assert (first != MASK).all()  # the mask logit dominates, yet is never drawn
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("name", sorted(DISCRETE_SAMPLERS))
def test_callback_sees_every_step_in_order(name):
    seen: list[Step] = []
    DISCRETE_SAMPLERS[name](
        chain(),
        masks(8),
        linear_mask_grid(6),
        mask_id=MASK,
        callback=lambda step, x, denoised: seen.append(step),
        generator=seeded(0),
    )
    assert [s.index for s in seen] == list(range(6)) and all(s.total == 6 for s in seen)
    assert seen[0].level == 1.0 and seen[-1].level_next == 0.0
    assert all(a.level_next == b.level for a, b in zip(seen, seen[1:], strict=False))


@pytest.mark.parametrize("name", sorted(DISCRETE_SAMPLERS))
def test_reuse_unchanged_skips_calls_when_no_token_changed(name):
    """With many steps and one row, most steps reveal nothing: the network is called once per
    distinct state (the last, fully revealed state needs no call), and the output is the same
    as without reuse (the denoiser ignores t and the random draws do not depend on the calls)."""
    sampler, states = DISCRETE_SAMPLERS[name], []
    plain, cached = chain(), chain()
    grid = linear_mask_grid(64)
    without = sampler(plain, masks(1), grid, mask_id=MASK, generator=seeded(4))
    with_reuse = sampler(
        cached,
        masks(1),
        grid,
        mask_id=MASK,
        generator=seeded(4),
        time_independent=True,
        callback=lambda step, x, denoised: states.append(x.clone()),
    )
    assert torch.equal(without, with_reuse)
    with_masks = {tuple(x.flatten().tolist()) for x in [masks(1), *states] if (x == MASK).any()}
    assert cached.calls == len(with_masks) <= L
    assert plain.calls > 4 * L


def test_reuse_unchanged_can_be_switched_on_and_off_explicitly():
    calls = {}
    for reuse in (True, False):
        oracle = chain()
        sample_confidence(
            oracle, masks(1), linear_mask_grid(64), mask_id=MASK, reuse_unchanged=reuse
        )
        calls[reuse] = oracle.calls
    # without reuse: one call per step until the last token is revealed, at the first step
    # ending below t = 1/4 (floor(s * 4) = 0), which is step 49 of 64
    assert calls[True] == L and calls[False] == 49


def test_all_discrete_samplers_share_one_signature():
    head = ["denoiser", "x", "schedule"]
    keywords = {"generator", "callback", "mask_id", "known", "mask", "temperature"}
    keywords |= {"reuse_unchanged", "time_independent"}
    for name, sampler in DISCRETE_SAMPLERS.items():
        params = inspect.signature(sampler).parameters
        positional = [p.name for p in params.values() if p.kind is p.POSITIONAL_ONLY]
        keyword_only = {p.name for p in params.values() if p.kind is p.KEYWORD_ONLY}
        assert positional == head, name
        assert keywords <= keyword_only, (name, keywords - keyword_only)
        assert params["mask_id"].default is inspect.Parameter.empty, name
        assert params["temperature"].default == 1.0, name


@pytest.mark.parametrize(
    "grid, message",
    [
        (torch.tensor([1.0, 0.5, 0.1]), "end at t = 0"),
        (torch.tensor([1.0, 0.2, 0.5, 0.0]), "decrease"),
        (torch.tensor([1.5, 0.5, 0.0]), "decrease strictly from t <= 1"),
        (torch.tensor([[1.0, 0.0]]), "1-D"),
    ],
)
def test_bad_grids_are_rejected_with_a_clear_message(grid, message):
    with pytest.raises(ValueError, match=message):
        sample_masked_ancestral(chain(), masks(2), grid, mask_id=MASK)


def test_bad_inputs_are_rejected_with_a_clear_message():
    oracle, grid = chain(), linear_mask_grid(4)
    with pytest.raises(TypeError, match="integer token ids"):
        sample_confidence(oracle, masks(2).float(), grid, mask_id=MASK)
    with pytest.raises(ValueError, match="known and mask go together"):
        sample_confidence(oracle, masks(2), grid, mask_id=MASK, known=masks(2))
    with pytest.raises(ValueError, match="known holds mask_id"):
        sample_confidence(oracle, masks(2), grid, mask_id=MASK, known=masks(2), mask=masks(2) > 0)
    with pytest.raises(ValueError, match="mask_id 7"):
        sample_masked_ancestral(TableDenoiser(torch.zeros(L, 4)), masks(2, 7), grid, mask_id=7)
    with pytest.raises(ValueError, match="temperature"):
        sample_masked_ancestral(oracle, masks(2), grid, mask_id=MASK, temperature=-1.0)
    for sampler in DISCRETE_SAMPLERS.values():
        with pytest.raises(ValueError, match="top_p"):
            sampler(oracle, masks(2), grid, mask_id=MASK, top_p=0.0)


# --- confidence-ordered unmasking ----------------------------------------------------------------


def revealed_per_step(sampler, x, grid, **options) -> list[torch.Tensor]:
    """Revealed-token masks (B, L) after each step, from the callback."""
    states = []
    sampler(
        options.pop("denoiser"),
        x,
        grid,
        callback=lambda step, x, denoised: states.append(x != options["mask_id"]),
        **options,
    )
    return states


@pytest.mark.parametrize("grid", [linear_mask_grid(4), cosine_mask_grid(5), linear_mask_grid(12)])
def test_confidence_reveals_the_number_of_tokens_the_grid_asks_for(grid):
    """After a step ending at time s, floor(s * 12) of the 12 masked positions remain masked."""
    table = TableDenoiser(torch.randn(12, 6, generator=seeded(5)))
    states = revealed_per_step(
        sample_confidence, torch.full((3, 12), 5), grid, denoiser=table, mask_id=5
    )
    for s, revealed in zip(grid[1:].tolist(), states, strict=True):
        assert ((~revealed).sum(1) == int(s * 12 + 1e-9)).all()


def test_confidence_reveals_the_most_confident_positions_first():
    table = TableDenoiser(peaked([0.3, 0.9, 0.5, 0.7]))
    states = revealed_per_step(
        sample_confidence,
        masks(2, 4),
        linear_mask_grid(4),
        denoiser=table,
        mask_id=4,
        temperature=0.0,
    )
    before = [torch.zeros(2, L, dtype=torch.bool), *states[:-1]]
    newly = [
        torch.nonzero(b[0] & ~a[0]).flatten().tolist() for a, b in zip(before, states, strict=True)
    ]
    assert newly == [[1], [3], [2], [0]]


@pytest.mark.parametrize(
    ("probs", "first"),
    [
        # position 0: 0.45 vs 0.44 (more probable, tiny margin); position 1: 0.40 vs 0.30
        ([[0.45, 0.44, 0.11], [0.40, 0.30, 0.30]], {"probability": 0, "margin": 1}),
        # position 0: 0.5 / 0.25 / 0.25 (likelier top token, wider margin, 1.04 nats);
        # position 1: 0.5 / 0.5 / 0 (0.69 nats; a zero-probability token must not give NaN)
        ([[0.5, 0.25, 0.25], [0.5, 0.5, 0.0]], {"probability": 0, "margin": 0, "entropy": 1}),
    ],
)
def test_each_confidence_measure_picks_its_own_first_position(probs, first):
    logits = torch.cat([torch.tensor(probs).log(), torch.zeros(2, 1)], 1)  # token 3: the mask
    picked = {}
    for kind in first:
        states = revealed_per_step(
            sample_confidence,
            torch.full((1, 2), 3),
            linear_mask_grid(2),
            denoiser=TableDenoiser(logits),
            mask_id=3,
            temperature=0.0,
            confidence=kind,
        )
        picked[kind] = int(torch.nonzero(states[0][0]))
    assert picked == first


@pytest.mark.parametrize("kind", ["margin", "entropy"])
def test_draw_blind_confidence_one_token_per_step_reproduces_the_distribution(kind):
    """Ranking positions without looking at the draw keeps every draw exact: an exact denoiser's
    samples follow its distribution, whatever order the ranking picks."""
    oracle = chain()
    out = sample_confidence(
        oracle,
        masks(6000),
        linear_mask_grid(L),
        mask_id=MASK,
        generator=seeded(4),
        confidence=kind,
    )
    counts = torch.bincount(index(out), minlength=K**L).double()
    assert chi_square_p(counts, oracle.probs) > 0.01


def test_probability_confidence_leans_to_likely_tokens_and_fails_the_same_test():
    """The drawn token's own probability ranks rare draws last, and they are redrawn: the kept
    tokens lean to the likely ones, so the same test rejects (it can fail)."""
    oracle = chain()
    out = sample_confidence(
        oracle,
        masks(6000),
        linear_mask_grid(L),
        mask_id=MASK,
        generator=seeded(4),
        confidence="probability",
    )
    counts = torch.bincount(index(out), minlength=K**L).double()
    assert chi_square_p(counts, oracle.probs) < 1e-6


def test_threshold_reveals_every_confident_candidate_and_at_least_one():
    table = TableDenoiser(peaked([0.95, 0.3, 0.92, 0.5, 0.4, 0.97]))
    x, seen = torch.full((1, 6), 4), []
    out = sample_confidence(
        table,
        x,
        linear_mask_grid(6),
        mask_id=4,
        temperature=0.0,
        threshold=0.9,
        callback=lambda step, x, denoised: seen.append((x != 4)[0].clone()),
    )
    # step 1: the three candidates above 0.9 together; then one per step, most confident first
    assert seen[0].tolist() == [True, False, True, False, False, True]
    newly = [torch.nonzero(b & ~a).flatten().tolist() for a, b in zip(seen, seen[1:], strict=False)]
    assert newly == [[3], [4], [1], [], []]
    assert table.calls == 4  # done after 4 steps: the last two grid steps call nothing
    assert (out != 4).all()


def _entropy_nats(c: float, others: int = 3) -> float:
    """Entropy of a ``peaked`` position: c on one token, the rest spread over ``others``."""
    return -c * math.log(c) - (1 - c) * math.log((1 - c) / others)


def test_entropy_bound_reveals_the_longest_run_that_fits_and_at_least_one():
    confidences = [0.99, 0.3, 0.97, 0.5, 0.4, 0.98]
    h = {c: _entropy_nats(c) for c in confidences}
    # most confident first: 0.99, 0.98, 0.97 fit (sum - max: 0.19 nats); with 0.5, whose entropy
    # is then the max, the sum - max is 0.36
    assert h[0.99] + h[0.98] <= 0.3 < h[0.99] + h[0.98] + h[0.97]
    table = TableDenoiser(peaked(confidences))
    seen = []
    out = sample_confidence(
        table,
        torch.full((1, 6), 4),
        linear_mask_grid(6),
        mask_id=4,
        temperature=0.0,
        entropy_bound=0.3,
        callback=lambda step, x, denoised: seen.append((x != 4)[0].clone()),
    )
    assert seen[0].tolist() == [True, False, True, False, False, True]
    newly = [torch.nonzero(b & ~a).flatten().tolist() for a, b in zip(seen, seen[1:], strict=False)]
    assert newly == [[3], [4], [1], [], []]  # uncertain positions: one per step
    assert table.calls == 4 and (out != 4).all()
    everything = TableDenoiser(peaked(confidences))
    sample_confidence(
        everything, torch.full((1, 6), 4), linear_mask_grid(6), mask_id=4, entropy_bound=10.0
    )
    assert everything.calls == 1


def test_entropy_bound_zero_keeps_one_token_per_step_and_exact_draws():
    oracle = chain()
    counted = Counted(oracle)
    out = sample_confidence(
        counted,
        masks(6000),
        linear_mask_grid(L),
        mask_id=MASK,
        generator=seeded(4),
        confidence="entropy",
        entropy_bound=0.0,
    )
    assert counted.calls == L
    counts = torch.bincount(index(out), minlength=K**L).double()
    assert chi_square_p(counts, oracle.probs) > 0.01


def test_entropy_bound_spends_its_passes_where_tokens_are_uncertain():
    """The sticky chain of the spacing test, 8 tokens: revealing by entropy bound takes 5 passes
    and lands closer to the true 15 % of switches than 5 even steps do, as close as 6 even
    steps (measured: 22.3 % against 25.2 % and 22.4 %)."""
    oracle = MarkovChainTokens(
        torch.tensor([0.5, 0.5], dtype=torch.float64),
        torch.tensor([[0.85, 0.15], [0.15, 0.85]], dtype=torch.float64),
        8,
    )
    error, passes = {}, {}
    for name, steps, bound in (("bound", 8, 0.5), ("5 steps", 5, None)):
        counted = Counted(oracle)
        out = sample_confidence(
            counted,
            torch.full((4000, 8), 2),
            linear_mask_grid(steps),
            mask_id=2,
            generator=seeded(0),
            confidence="entropy",
            entropy_bound=bound,
        )
        error[name] = abs(float((out[:, 1:] != out[:, :-1]).double().mean()) - 0.15)
        passes[name] = counted.calls
    assert passes == {"bound": 5, "5 steps": 5}
    assert error["bound"] < 0.85 * error["5 steps"]
    with pytest.raises(ValueError, match="entropy_bound"):
        sample_confidence(
            oracle, torch.full((1, 8), 2), linear_mask_grid(8), mask_id=2, entropy_bound=-0.1
        )


def test_blocks_fill_left_to_right_after_the_prompt():
    """A 2-token prompt, then 3 blocks of 4: 6 steps, 2 per block; no block starts before the
    previous one is complete, and the denoiser's time falls from 1 to 0 across the blocks."""
    table = TableDenoiser(torch.randn(14, 6, generator=seeded(6)))
    prompt = torch.tensor([1, 2])
    x = torch.cat([prompt.expand(2, 2), torch.full((2, 12), 5)], 1)
    seen: list[tuple[Step, torch.Tensor]] = []
    out = sample_confidence(
        table,
        x,
        linear_mask_grid(6),
        mask_id=5,
        block_size=4,
        generator=seeded(0),
        callback=lambda step, x, denoised: seen.append((step, x != 5)),
    )
    assert (out[:, :2] == prompt).all() and (out != 5).all()
    remaining = [(~revealed[:, 2:]).reshape(2, 3, 4).sum(2) for _, revealed in seen]  # per block
    expected = [[2, 4, 4], [0, 4, 4], [0, 2, 4], [0, 0, 4], [0, 0, 2], [0, 0, 0]]
    assert [r.tolist() for r in remaining] == [[e, e] for e in expected]
    levels = [step.level for step, _ in seen] + [seen[-1][0].level_next]
    assert levels == pytest.approx([1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0])


def test_aligned_blocks_start_at_multiples_of_the_block_size():
    """The same 2-token prompt with aligned blocks of 4: the first block is columns 0..3 (two
    of them masked), then 4..7 and 8..11: a block-diffusion model's own blocks."""
    table = TableDenoiser(torch.randn(12, 6, generator=seeded(6)))
    x = torch.cat([torch.tensor([[1, 2]]), torch.full((1, 10), 5)], 1)
    seen: list[torch.Tensor] = []
    sample_confidence(
        table,
        x,
        linear_mask_grid(6),
        mask_id=5,
        block_size=4,
        align_blocks=True,
        generator=seeded(0),
        callback=lambda step, x, denoised: seen.append(x[0] == 5),
    )
    remaining = [masked.reshape(3, 4).sum(1).tolist() for masked in seen]
    assert remaining == [[1, 4, 4], [0, 4, 4], [0, 2, 4], [0, 0, 4], [0, 0, 2], [0, 0, 0]]


def test_blocks_need_steps_shared_evenly():
    with pytest.raises(ValueError, match="multiple of 3"):
        sample_confidence(
            TableDenoiser(torch.randn(12, 6)),
            torch.full((1, 12), 5),
            linear_mask_grid(4),
            mask_id=5,
            block_size=4,
        )


def test_confidence_keeps_known_tokens_fixed():
    oracle = chain()
    known, fixed = torch.tensor([0, 2, 1, 0]), torch.tensor([False, True, False, True])
    out = sample_confidence(
        oracle,
        masks(50),
        cosine_mask_grid(3),
        mask_id=MASK,
        known=known,
        mask=fixed,
        generator=seeded(7),
    )
    assert (out[:, fixed] == known[fixed]).all() and (out != MASK).all()
    assert (oracle.posterior(out).max(1).values > 0).all()  # every output is a possible sequence


def test_confidence_noise_spreads_early_reveals_and_keeps_the_grid_counts():
    """MaskGIT's randomized ranking: with noise the first reveal lands anywhere (not always on
    the most confident position), the grid's counts still hold, and a seed repeats the run."""
    confident = [0.99] + [0.3] * 11
    table = TableDenoiser(peaked(confident, vocab=6))
    grid = linear_mask_grid(12)
    first = {}
    for noise in (0.0, 20.0):
        states = revealed_per_step(
            sample_confidence,
            torch.full((200, 12), 5),
            grid,
            denoiser=table,
            mask_id=5,
            temperature=0.0,
            confidence_noise=noise,
        )
        for s, revealed in zip(grid[1:].tolist(), states, strict=True):
            assert ((~revealed).sum(1) == int(s * 12 + 1e-9)).all()
        first[noise] = set(states[0].float().argmax(1).tolist())
    assert first[0.0] == {0}
    assert len(first[20.0]) >= 10
    runs = [
        sample_confidence(
            TableDenoiser(peaked(confident, vocab=6)),
            torch.full((4, 12), 5),
            grid,
            generator=seeded(3),
            mask_id=5,
            confidence_noise=4.5,
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    with pytest.raises(ValueError, match="confidence_noise"):
        sample_confidence(table, masks(1, 5), grid, mask_id=5, confidence_noise=-1.0)


def test_spacing_reveals_positions_of_one_step_apart_then_fills_the_count():
    """Confidence 0.9 0.8 0.7 0.6 0.5 0.4 over 6 positions, 3 revealed per step: plain order
    takes 0 1 2; spacing 1 takes 0 2 4 (each more than 1 apart); spacing 3 can place only 0
    and 4, so the count is filled with the most confident position left, 1."""
    table = TableDenoiser(peaked([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], vocab=6))
    first = {}
    for spacing in (0, 1, 3):
        states = revealed_per_step(
            sample_confidence,
            torch.full((2, 6), 5),
            linear_mask_grid(2),
            denoiser=table,
            mask_id=5,
            temperature=0.0,
            spacing=spacing,
        )
        assert [int((~s[0]).sum()) for s in states] == [3, 0]  # the grid's counts hold
        first[spacing] = torch.nonzero(states[0][0]).flatten().tolist()
    assert first == {0: [0, 1, 2], 1: [0, 2, 4], 3: [0, 1, 4]}
    with pytest.raises(ValueError, match="spacing"):
        sample_confidence(table, torch.full((1, 6), 5), linear_mask_grid(2), mask_id=5, spacing=-1)


def test_spacing_brings_parallel_samples_of_a_sticky_chain_closer_to_the_truth():
    """A chain that keeps its symbol with probability 0.85: exact sequences switch symbol at
    15% of adjacent pairs. Revealing half the positions per step (2 steps for 8), neighbours
    drawn together disagree too often: 41% switches measured without spacing, 25% with
    spacing 1 (neighbours of a step's reveals wait for the next step)."""
    oracle = MarkovChainTokens(
        torch.tensor([0.5, 0.5], dtype=torch.float64),
        torch.tensor([[0.85, 0.15], [0.15, 0.85]], dtype=torch.float64),
        8,
    )
    error = {}
    for spacing in (0, 1):
        out = sample_confidence(
            oracle,
            torch.full((4000, 8), 2),
            linear_mask_grid(2),
            mask_id=2,
            generator=seeded(0),
            spacing=spacing,
        )
        error[spacing] = abs(float((out[:, 1:] != out[:, :-1]).double().mean()) - 0.15)
    assert error[1] < 0.6 * error[0]
