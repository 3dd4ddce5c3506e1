"""Substitution corruption for tokens and its refinement sampler."""

from __future__ import annotations

import pytest
import torch

from diffcore.generation import SUBSTITUTE_SAMPLERS, SubstituteOptions
from diffcore.processes import SubstitutionProcess, blosum_replacement, uniform_replacement
from diffcore.samplers import sample_substitute

VOCAB, MASK = 8, 7
TOKENS = range(2, 7)  # ids 0, 1 are specials, 7 the mask: never written


def process(**kw) -> SubstitutionProcess:
    return SubstitutionProcess(uniform_replacement(VOCAB, TOKENS), MASK, **kw)


class Exact:
    """The exact denoiser of a data set of one sequence: certain of it whatever it sees."""

    def __init__(self, target: torch.Tensor) -> None:
        self.target, self.calls = target, 0

    def __call__(self, x, t):
        self.calls += 1
        logits = torch.full((*x.shape, VOCAB), -30.0)
        return logits.scatter(-1, self.target.expand_as(x).unsqueeze(-1), 30.0)


def test_uniform_rows_cover_the_allowed_tokens_only():
    r = uniform_replacement(VOCAB, TOKENS)
    assert torch.allclose(r.sum(1), torch.ones(VOCAB, dtype=torch.float64))
    assert (r[:, [0, 1, MASK]] == 0).all() and (r[:, 2:7] == 0.2).all()


def test_blosum_rows_prefer_similar_tokens_and_never_keep_the_token():
    scores = {(a, b): (4.0 if {a, b} == {2, 3} else -2.0) for a in TOKENS for b in TOKENS}
    r = blosum_replacement(VOCAB, scores, TOKENS)
    assert r[2, 2] == 0 and r[2, 3] > 0.5 and r[2, 4] == pytest.approx(r[2, 5])
    assert torch.allclose(r.sum(1), torch.ones(VOCAB, dtype=torch.float64))


def test_corruption_substitutes_a_share_t_and_leaves_uncounted_positions():
    p = process()
    x0 = torch.full((4000, 10), 2)
    t = torch.tensor([0.0, 0.5, 1.0, 0.5]).repeat_interleave(1000)
    counted = torch.ones_like(x0, dtype=torch.bool)
    counted[:, 0] = False
    xt = p.corrupt(x0, t, torch.Generator().manual_seed(0), counted=counted)
    changed = (xt != x0).float()
    assert changed[:1000].sum() == 0 and changed[:, 0].sum() == 0
    # a substituted token stays 2 with probability 1/5 (uniform over 5 tokens)
    assert float(changed[1000:2000, 1:].mean()) == pytest.approx(0.5 * 0.8, abs=0.02)
    assert float(changed[2000:3000, 1:].mean()) == pytest.approx(0.8, abs=0.02)
    assert set(xt.unique().tolist()) <= set(TOKENS)


def test_the_loss_is_the_cross_entropy_of_x0_at_every_counted_position():
    p = process()
    x0 = torch.randint(2, 7, (3, 6), generator=torch.Generator().manual_seed(1))
    assert float(p.loss(Exact(x0), x0, torch.Generator().manual_seed(0))) < 1e-6
    uniform = lambda x, t: torch.zeros(*x.shape, VOCAB)  # noqa: E731
    # uniform logits over the 7 non-mask ids
    loss = p.loss(uniform, x0, torch.Generator().manual_seed(0))
    assert float(loss) == pytest.approx(float(torch.log(torch.tensor(7.0))), rel=1e-5)


@pytest.mark.parametrize("resample", ["random", "confidence"])
def test_the_exact_denoiser_is_reached_and_known_tokens_are_kept(resample):
    target = torch.tensor([[2, 3, 4, 5, 6, 2, 3, 4]])
    x = torch.full((3, 8), MASK)
    x[:, 0] = 6  # context: kept as it is, even though the denoiser disagrees
    out = sample_substitute(
        Exact(target), x, torch.linspace(1, 0, 5), mask_id=MASK, process=process(),
        generator=torch.Generator().manual_seed(0), resample=resample,
    )  # fmt: skip
    assert (out[:, 0] == 6).all() and (out[:, 1:] == target[:, 1:]).all()


def test_confidence_resampling_substitutes_the_least_sure_positions_again():
    p = SubstitutionProcess(uniform_replacement(VOCAB, range(3, 7)), MASK)  # never writes 2
    x = torch.full((1, 6), MASK)
    logits = torch.zeros(1, 6, VOCAB)
    logits[0, :, 2] = torch.tensor([9.0, 8.0, 7.0, 0.5, 0.4, 0.3])  # sure of the first three
    seen = []
    sample_substitute(
        lambda x, t: logits, x, torch.tensor([1.0, 0.5, 0.0]), mask_id=MASK, process=p,
        temperature=0.0, resample="confidence", generator=torch.Generator().manual_seed(0),
        callback=lambda step, xs, x0: seen.append(xs.clone()),
    )  # fmt: skip
    # after step 1 (s = 0.5): the three sure positions keep their argmax 2; the other three
    # were substituted again, by tokens that are never 2
    assert (seen[0][0, :3] == 2).all() and (seen[0][0, 3:] != 2).all()
    assert (seen[1] == 2).all()  # the last step (s = 0) keeps the argmax everywhere


def test_the_sampler_is_registered_with_the_token_grids():
    options = SubstituteOptions.build(None, 4, 1.0, {"resample": "confidence", "grid": "cosine"})
    assert options.function is SUBSTITUTE_SAMPLERS["substitute"] and options.grid == "cosine"
    with pytest.raises(ValueError, match="takes no option 'process'"):
        SubstituteOptions.build(None, 4, 1.0, {"process": None})


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="never write the mask"):
        SubstitutionProcess(torch.full((VOCAB, VOCAB), 1.0 / VOCAB), MASK)
    with pytest.raises(ValueError, match="summing to 1"):
        SubstitutionProcess(torch.ones(VOCAB, VOCAB), MASK)
    with pytest.raises(ValueError, match="resample must be"):
        sample_substitute(
            lambda x, t: None, torch.full((1, 2), MASK), torch.tensor([1.0, 0.0]),
            mask_id=MASK, process=process(), resample="best",
        )  # fmt: skip
