"""MaskProcess: corruption, grids, and the ELBO checked against exact enumeration.

The oracle is a 3-symbol Markov chain over 4 positions (81 sequences). For a denoiser returning
the exact conditionals, the continuous-time ELBO equals the any-order autoregressive likelihood,
which is exactly -log p(x0) (Ou et al. 2024): the bound is tight, so Monte-Carlo estimates of it
must agree with the entropy to within their own noise.
"""

import math

import pytest
import torch

from diffcore.processes.mask import (
    MaskProcess,
    block_attention_mask,
    clean_log_probs,
    cosine_mask_grid,
    linear_mask_grid,
)
from diffcore.toys import MarkovChainTokens

K, L, MASK = 3, 4, 3  # symbols 0..2, sequences of 4, token 3 is the mask (vocabulary of 4)
INIT = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
TRANS = torch.tensor([[0.6, 0.2, 0.2], [0.3, 0.4, 0.3], [0.2, 0.3, 0.5]], dtype=torch.float64)
PROCESS = MaskProcess(mask_id=MASK, vocab_size=K + 1)


def chain(mask_logit: float = 30.0) -> MarkovChainTokens:
    """The exact TokenDenoiser of the chain (see diffcore.toys.MarkovChainTokens)."""
    return MarkovChainTokens(INIT, TRANS, L, mask_logit=mask_logit)


def uniform_denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.zeros(*x.shape, K + 1)


def blurred(oracle: MarkovChainTokens):
    """An imperfect, time-independent denoiser: 70% exact conditionals + 30% uniform."""

    def denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        probs = 0.7 * torch.softmax(oracle(x, t)[..., :K], -1) + 0.1
        return torch.cat([probs.log(), torch.zeros(*x.shape, 1)], -1)

    return denoiser


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def exact_nelbo(denoiser, x0: torch.Tensor, t_min: float = 0.0) -> torch.Tensor:
    """The NELBO per token of each row of x0 (N, L), by enumerating all 2^L mask patterns: a
    pattern with k masked positions has weight int_{t_min}^1 t^(k-1) (1-t)^(L-k) dt / (1 - t_min)
    (times t drawn uniformly in [t_min, 1], the loss weighted by 1/t)."""
    patterns = torch.cartesian_prod(*[torch.tensor([False, True])] * L)  # (16, L)
    k = patterns.sum(1).tolist()
    weight = torch.tensor(
        [
            sum(
                math.comb(L - j, i) * (-1) ** i * (1 - t_min ** (j + i)) / (j + i)
                for i in range(L - j + 1)
            )
            / (1 - t_min)
            if j
            else 0.0
            for j in k
        ],
        dtype=torch.float64,
    )
    xt = torch.where(patterns[None], MASK, x0[:, None]).reshape(-1, L)  # (N * 16, L)
    logp = clean_log_probs(denoiser(xt, torch.ones(len(xt))), MASK).double()
    nll = -logp.gather(-1, x0.repeat_interleave(len(patterns), 0)[..., None]).squeeze(-1)
    per_pattern = (nll * patterns.repeat(len(x0), 1)).sum(1).reshape(len(x0), -1)
    return (per_pattern * weight).sum(1) / L


# --- grids --------------------------------------------------------------------------------------


def test_grids_run_from_one_to_zero_in_n_steps():
    assert torch.equal(linear_mask_grid(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]).double())
    cosine = cosine_mask_grid(4)
    expected = [math.cos(math.pi / 2 * i / 4) for i in range(4)] + [0.0]
    assert cosine.dtype == torch.float64 and cosine.tolist() == pytest.approx(expected, abs=1e-15)
    assert cosine[-1] == 0.0 and (cosine.diff() < 0).all()
    reveal = -cosine.diff()  # share of tokens revealed by each step
    assert (reveal.diff() > 0).all()  # few at first, more and more later
    with pytest.raises(ValueError, match="positive integer"):
        linear_mask_grid(0)


# --- corruption and training times -------------------------------------------------------------


def test_corrupt_masks_each_token_with_probability_t():
    x0 = torch.randint(0, K, (5, 20000), generator=seeded(0))
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    xt = PROCESS.corrupt(x0, t, seeded(1))
    masked = xt == MASK
    assert torch.equal(xt[~masked], x0[~masked])  # what is not masked is untouched
    share = masked.double().mean(1)
    assert share[0] == 0.0 and share[-1] == 1.0
    tolerance = 4 * torch.sqrt(t * (1 - t) / 20000)  # 4 binomial standard errors
    assert ((share - t).abs() <= tolerance).all()
    assert torch.equal(xt, PROCESS.corrupt(x0, t, seeded(1)))  # reproducible from the seed


def test_sample_time_puts_one_time_in_each_stratum_above_t_min():  # the "time" estimator
    t = PROCESS.sample_time(64, seeded(2))
    assert t.shape == (64,) and t.min() >= PROCESS.t_min and t.max() <= 1.0
    strata = ((t - PROCESS.t_min) / (1 - PROCESS.t_min) * 64).floor().sort().values
    assert strata.tolist() == list(range(64))


# --- the ELBO -----------------------------------------------------------------------------------


def test_elbo_of_the_exact_denoiser_is_exactly_the_log_likelihood():
    """The oracle behind the tolerances below: enumerated over all mask patterns, the NELBO of
    the exact conditionals is -log p(x0) for every sequence, to rounding."""
    oracle = chain()
    nelbo = exact_nelbo(oracle, oracle.seqs)
    assert torch.allclose(nelbo, -oracle.probs.log() / L, atol=1e-6)


@pytest.mark.parametrize("estimator", ["count", "time", "complementary"])
@pytest.mark.parametrize("denoiser", ["exact", "blurred", "uniform"])
def test_loss_is_an_unbiased_estimate_of_the_elbo(denoiser, estimator):
    """The mean of 200 losses on a fixed batch matches the enumerated NELBO (the "time" form:
    restricted to t >= t_min; the count forms: all of (0, 1]) within 4 standard errors + 1e-6
    (and the standard error is small: < 0.01 nats)."""
    oracle = chain()
    model = {"exact": oracle, "blurred": blurred(oracle), "uniform": uniform_denoiser}[denoiser]
    process = MaskProcess(MASK, K + 1, estimator=estimator)
    x0 = oracle.sample(512, seeded(3))
    gen = seeded(4)
    losses = torch.stack([process.loss(model, x0, gen) for _ in range(200)]).double()
    mean, stderr = losses.mean(), losses.std() / math.sqrt(len(losses))
    exact = exact_nelbo(model, x0, process.t_min if estimator == "time" else 0.0).mean()
    assert stderr < 0.01 and (mean - exact).abs() < 4 * stderr + 1e-6
    if denoiser == "uniform":  # every masked token costs log 3, weighted to log 3 per token
        assert exact == pytest.approx(math.log(3), abs=1e-6)  # float32 log-softmax


def test_the_count_estimate_varies_less_than_the_time_estimate():
    """Same batch, same imperfect denoiser: exact masked counts with 1/k weights spread the loss
    far less than Bernoulli masks with 1/t weights (measured standard deviations over 200
    losses: 0.0074 vs 0.052 nats)."""
    oracle = chain()
    x0 = oracle.sample(512, seeded(16))
    spread = {}
    for estimator in ("count", "time"):
        process = MaskProcess(MASK, K + 1, estimator=estimator)
        gen = seeded(17)
        losses = torch.stack([process.loss(blurred(oracle), x0, gen) for _ in range(200)])
        spread[estimator] = float(losses.double().std())
    assert spread["count"] < 0.3 * spread["time"]


def test_the_count_estimate_masks_exactly_k_counted_tokens_and_calls_with_t_k_over_n():
    x0 = chain().sample(64, seeded(18))
    loss_mask = torch.tensor([True, True, True, False]).expand(64, L)
    seen = []

    def spy(x, t):
        seen.append((x, t))
        return uniform_denoiser(x, t)

    PROCESS.loss(spy, x0, seeded(19), loss_mask=loss_mask)
    ((x, t),) = seen
    k = (x == MASK).sum(1)
    assert (x[:, 3] == x0[:, 3]).all()  # uncounted: never masked
    assert k.min() >= 1 and k.max() <= 3 and set(k.tolist()) == {1, 2, 3}
    assert torch.allclose(t, k / 3.0)


def test_the_complementary_estimate_scores_every_counted_token_once_per_pair():
    """Row i and row B + i hold the same sequence; their masks split its counted tokens (or,
    when row i masks all of them, both do), each half has 1..n masked, and the conditioning
    rows are repeated with the batch."""
    x0 = chain().sample(64, seeded(20))
    loss_mask = torch.tensor([True, True, True, False]).expand(64, L)
    seen = []

    def spy(x, t, attention_mask):
        seen.append((x, t, attention_mask))
        return uniform_denoiser(x, t)

    process = MaskProcess(MASK, K + 1, estimator="complementary")
    rows = torch.arange(64)[:, None].expand(64, L)
    process.loss(spy, x0, seeded(21), loss_mask=loss_mask, attention_mask=rows)
    ((x, t, attention),) = seen
    assert x.shape == (128, L) and torch.equal(attention, torch.cat([rows, rows]))
    first, second = x[:64] == MASK, x[64:] == MASK
    assert not (first | second)[:, 3].any()  # uncounted: never masked
    everything = first[:, :3].all(1)
    assert torch.equal(second[everything], first[everything])
    assert torch.equal(
        (first ^ second)[~everything, :3], torch.ones(int((~everything).sum()), 3, dtype=torch.bool)
    )
    k = (x == MASK).sum(1)
    assert k.min() >= 1 and set(k[64:].tolist()) == {1, 2, 3}
    assert torch.allclose(t, k / 3.0)


def test_loss_ignores_the_mask_logit_and_predictions_at_visible_positions():
    x0 = chain().sample(64, seeded(5))
    scramble = torch.randn(64, L, K + 1, generator=seeded(6)) * 5

    def noisy_where_visible(x, t):
        return torch.where((x == MASK)[..., None], chain(-30.0)(x, t), scramble)

    losses = [
        float(PROCESS.loss(model, x0, seeded(7)))
        for model in (chain(30.0), chain(-30.0), noisy_where_visible)
    ]
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
    assert losses[0] == pytest.approx(losses[2], abs=1e-6)


def test_the_mask_logit_gets_no_gradient_and_the_rest_does():
    logits = torch.zeros(L, K + 1, requires_grad=True)
    x0 = chain().sample(32, seeded(8))
    PROCESS.loss(lambda x, t: logits.expand(x.shape[0], -1, -1), x0, seeded(9)).backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad[:, MASK] == 0).all() and (logits.grad[:, :MASK] != 0).any()


def test_loss_mask_keeps_excluded_positions_visible_and_averages_over_counted_tokens():
    x0 = chain().sample(256, seeded(10))
    loss_mask = torch.tensor([False, True, True, False]).expand(256, L)
    seen = []

    def spy(x, t):
        seen.append(x)
        return uniform_denoiser(x, t)

    gen = seeded(11)
    losses = torch.stack([PROCESS.loss(spy, x0, gen, loss_mask=loss_mask) for _ in range(100)])
    seen = torch.cat(seen)
    assert (seen[:, [0, 3]] != MASK).all() and (seen[:, [1, 2]] == MASK).any()
    assert losses.double().mean() == pytest.approx(math.log(3), abs=0.02)  # per counted token


# --- the likelihood bound ----------------------------------------------------------------------


def test_nll_bound_of_the_exact_denoiser_equals_the_entropy():
    """Its expectation is -log p(x0) / L for every sequence, so over all 81 sequences weighted by
    p the estimate is the entropy per token (1.016 nats) up to Monte-Carlo noise. Tolerance 0.01
    nats, about 3.5 standard errors at 128 samples (0.0028, measured over 30 seeds); per
    sequence 0.2 nats (5 standard deviations of a single sequence's estimate)."""
    oracle = chain()
    bound = PROCESS.nll_bound(oracle, oracle.seqs, generator=seeded(12), samples=128)
    entropy = float(-(oracle.probs * oracle.probs.log()).sum()) / L
    estimate = float((oracle.probs * bound).sum())
    assert estimate >= entropy - 0.01 and abs(estimate - entropy) < 0.01
    assert torch.allclose(bound, -oracle.probs.log() / L, atol=0.2)


def test_nll_bound_is_unbiased_for_the_elbo_of_any_time_independent_denoiser():
    """A blurred oracle (70% exact conditionals + 30% uniform): the estimate matches its
    enumerated continuous-time NELBO over all of (0, 1], which lies above the entropy."""
    oracle = chain()
    bound = PROCESS.nll_bound(blurred(oracle), oracle.seqs, generator=seeded(13), samples=128)
    exact = float((oracle.probs * exact_nelbo(blurred(oracle), oracle.seqs)).sum())
    entropy = float(-(oracle.probs * oracle.probs.log()).sum()) / L
    assert float((oracle.probs * bound).sum()) == pytest.approx(exact, abs=0.01)
    assert exact > entropy + 0.005


def test_nll_bound_of_a_uniform_denoiser_is_log_3_and_worse_than_the_exact_one():
    oracle = chain()
    uniform = PROCESS.nll_bound(uniform_denoiser, oracle.seqs, generator=seeded(14), samples=8)
    exact = PROCESS.nll_bound(oracle, oracle.seqs, generator=seeded(14), samples=128)
    assert torch.allclose(uniform, torch.full_like(uniform, math.log(3)))  # every token: log 3
    assert float((oracle.probs * (uniform - exact)).sum()) > 0.07  # the entropy is 1.016


def test_nll_bound_with_a_prompt_bounds_the_conditional_likelihood():
    """Positions 0 and 1 are visible context: the bound is -log p(x2, x3 | x0, x1) / 2."""
    oracle = chain()
    prompt_free = torch.tensor([False, False, True, True]).expand(81, L)
    bound = PROCESS.nll_bound(
        oracle, oracle.seqs, generator=seeded(15), samples=128, loss_mask=prompt_free
    )
    conditional = (
        TRANS[oracle.seqs[:, 1], oracle.seqs[:, 2]] * TRANS[oracle.seqs[:, 2], oracle.seqs[:, 3]]
    )
    expected = -conditional.log() / 2
    assert float((oracle.probs * (bound - expected)).sum()) == pytest.approx(0.0, abs=0.01)


# --- block diffusion ----------------------------------------------------------------------------


def block_oracle(oracle: MarkovChainTokens, block: int):
    """The exact block-diffusion denoiser of the chain: block b's logits are the chain's
    conditionals given the clean blocks before b (from ``context``) and x_t's block b, with the
    blocks after b hidden. ``calls`` records each call's (x_t, context)."""
    ids = torch.arange(L) // block
    calls = []

    def denoiser(x: torch.Tensor, t: torch.Tensor, *, context: torch.Tensor) -> torch.Tensor:
        calls.append((x, context))
        out = torch.empty(*x.shape, K + 1)
        for b in ids.unique():
            view = torch.where(ids < b, context, torch.where(ids == b, x, MASK))
            out[:, ids == b] = oracle(view, t)[:, ids == b].float()
        return out

    denoiser.calls = calls
    return denoiser


def test_block_attention_mask_is_block_causal_and_lays_out_xt_before_the_clean_copy():
    causal = block_attention_mask(4, 2)
    assert causal.tolist() == [
        [True, True, False, False],
        [True, True, False, False],
        [True, True, True, True],
        [True, True, True, True],
    ]
    two = block_attention_mask(4, 2, context=True)  # x_t at 0..3, x0 at 4..7
    assert two.shape == (8, 8)
    assert two[:4, :4].tolist() == [  # x_t sees its own block only
        [True, True, False, False],
        [True, True, False, False],
        [False, False, True, True],
        [False, False, True, True],
    ]
    assert two[:4, 4:].tolist() == [  # and the clean blocks before it
        [False] * 4,
        [False] * 4,
        [True, True, False, False],
        [True, True, False, False],
    ]
    assert not two[4:, :4].any() and torch.equal(two[4:, 4:], causal)
    with pytest.raises(ValueError, match="block"):
        block_attention_mask(4, 0)


def test_block_one_is_autoregressive_and_its_bound_is_exact_on_every_draw():
    """Blocks of one token: each is predicted from the clean tokens before it, so the bound is
    -log p(x0) / L for every sequence and every draw (no Monte-Carlo noise), and the loss is
    the exact NLL of the batch."""
    oracle = chain()
    process = MaskProcess(MASK, K + 1, block=1)
    bound = process.nll_bound(block_oracle(oracle, 1), oracle.seqs, generator=seeded(30), samples=2)
    assert torch.allclose(bound, -oracle.probs.log() / L, atol=1e-5)
    x0 = oracle.sample(64, seeded(31))
    loss = process.loss(block_oracle(oracle, 1), x0, seeded(32))
    exact = float(
        -oracle.probs.log()[(x0[:, None] == oracle.seqs).all(-1).float().argmax(1)].mean()
    )
    assert float(loss) == pytest.approx(exact / L, abs=1e-5)


@pytest.mark.parametrize("estimator", ["count", "complementary"])
def test_block_bound_and_loss_of_the_exact_block_denoiser_are_the_entropy(estimator):
    """Blocks of two: the block ELBO of exact block conditionals is tight, so both the bound
    over all 81 sequences and the mean loss on a sample match the entropy per token."""
    oracle = chain()
    process = MaskProcess(MASK, K + 1, block=2, estimator=estimator)
    entropy = float(-(oracle.probs * oracle.probs.log()).sum()) / L
    bound = process.nll_bound(
        block_oracle(oracle, 2), oracle.seqs, generator=seeded(33), samples=64
    )
    assert float((oracle.probs * bound).sum()) == pytest.approx(entropy, abs=0.01)
    x0, gen = oracle.sample(512, seeded(34)), seeded(35)
    losses = torch.stack([process.loss(block_oracle(oracle, 2), x0, gen) for _ in range(50)])
    nll = float(-oracle.probs.log()[(x0[:, None] == oracle.seqs).all(-1).float().argmax(1)].mean())
    assert float(losses.double().mean()) == pytest.approx(nll / L, abs=0.01)


def test_block_loss_masks_every_block_on_its_own_and_passes_the_clean_context():
    oracle = chain()
    denoiser = block_oracle(oracle, 2)
    x0 = oracle.sample(256, seeded(36))
    MaskProcess(MASK, K + 1, block=2).loss(denoiser, x0, seeded(37))
    ((x, context),) = denoiser.calls
    assert torch.equal(context, x0)
    per_block = (x == MASK).reshape(len(x), 2, 2).sum(-1)
    assert per_block.min() == 1 and per_block.max() == 2  # 1..n masked in every block
    assert torch.equal(torch.where(x == MASK, x0, x), x0)


def test_a_block_as_long_as_the_sequence_is_plain_masked_diffusion():
    """Same draws, same bound: one block of L tokens is MDLM (the context goes unused)."""
    oracle = chain()

    def ignoring_context(x, t, context=None):
        return blurred(oracle)(x, t)

    plain = PROCESS.nll_bound(blurred(oracle), oracle.seqs, generator=seeded(38), samples=4)
    whole = MaskProcess(MASK, K + 1, block=L).nll_bound(
        ignoring_context, oracle.seqs, generator=seeded(38), samples=4
    )
    assert torch.allclose(plain, whole, atol=1e-6)


def test_bad_arguments_are_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="mask_id"):
        MaskProcess(mask_id=4, vocab_size=4)
    x0 = torch.zeros(2, L, dtype=torch.long)
    with pytest.raises(TypeError, match="integer token ids"):
        PROCESS.loss(uniform_denoiser, x0.float())
    with pytest.raises(ValueError, match="logits of shape"):
        PROCESS.loss(lambda x, t: torch.zeros(*x.shape, 7), x0)
    with pytest.raises(ValueError, match="loss_mask"):
        PROCESS.loss(uniform_denoiser, x0, loss_mask=torch.ones(2, L))
    with pytest.raises(ValueError, match="at least one counted token"):
        PROCESS.nll_bound(uniform_denoiser, x0, loss_mask=torch.zeros(2, L, dtype=torch.bool))
    with pytest.raises(ValueError, match="samples"):
        PROCESS.nll_bound(uniform_denoiser, x0, samples=0)
    with pytest.raises(ValueError, match="one time per row"):
        PROCESS.corrupt(x0, torch.ones(3))
    with pytest.raises(ValueError, match="block must be a positive integer"):
        MaskProcess(MASK, K + 1, block=0)
    with pytest.raises(ValueError, match="'count' or 'complementary'"):
        MaskProcess(MASK, K + 1, block=2, estimator="time")
