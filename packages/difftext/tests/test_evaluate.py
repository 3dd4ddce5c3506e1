"""Evaluation against exact answers: a model with all weights zero predicts the uniform
distribution, whose NLL (and bound: it ignores its context, so the bound is tight) is log V."""

import math

import pytest
import torch

from difftext.data import Document, make_blocks
from difftext.evaluate import (
    causal_nll,
    diffusion_nll_bound,
    evaluate_samples,
    generative_perplexity,
    unigram_entropy,
    word_share,
    words_of,
)
from difftext.training import build_model

TEXT = "Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 3


def zeroed(model):
    with torch.no_grad():
        for p in model.model.parameters():
            p.zero_()
    return model


@pytest.fixture
def blocks(char_tokenizer):
    return make_blocks(char_tokenizer, [Document(TEXT, "richard3"), Document("Now", "b")], 32)


def test_a_uniform_denoiser_has_the_bound_log_of_the_allowed_tokens(char_tokenizer, blocks):
    model = zeroed(build_model("diffusion", char_tokenizer, 32, preset="tiny"))
    nll = diffusion_nll_bound(model, blocks, samples=3, batch_size=4)
    allowed = len(char_tokenizer) - 3  # padding, mask and BOS are never text
    assert nll.bound and nll.tokens == len(TEXT) + 3 == nll.characters
    assert math.isclose(nll.nats_per_token, math.log(allowed), rel_tol=1e-6)
    assert math.isclose(nll.bits_per_char, math.log2(allowed), rel_tol=1e-6)


def test_a_uniform_peer_scores_log_v_and_judges_perplexity_v(char_tokenizer, blocks):
    peer = zeroed(build_model("autoregressive", char_tokenizer, 32, preset="tiny"))
    nll = causal_nll(peer, blocks, batch_size=3)
    assert not nll.bound
    assert math.isclose(nll.bits_per_token, math.log2(len(char_tokenizer)), rel_tol=1e-6)
    ppl = generative_perplexity(peer, ["Now is the winter", "of our discontent!"])
    assert math.isclose(ppl, len(char_tokenizer), rel_tol=1e-5)
    with pytest.raises(ValueError, match="must be an autoregressive model"):
        generative_perplexity(build_model("diffusion", char_tokenizer, 32, preset="tiny"), ["a"])


def test_unigram_entropy_and_word_share_are_exact(char_tokenizer):
    assert unigram_entropy(["aabb", "abcd"], char_tokenizer) == pytest.approx(1.5)
    assert unigram_entropy(["zzzzzzzz"], char_tokenizer) == 0.0  # a collapsed sample
    # words touching either end are cut by the block boundary: left out
    assert words_of("xthe Cat o'er a matx", interior=True) == ["cat", "o'er", "a"]
    assert word_share(["xthe Cat sat on a dog's matx"], {"cat", "on", "dog's"}) == (0.6, 5)
    report = evaluate_samples(["xthe cat satx"], char_tokenizer, reference=["The cat."])
    assert report.word_share == 1.0 and report.words == 1
    assert math.isnan(report.generative_perplexity)  # no judge given
