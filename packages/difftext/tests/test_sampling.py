"""Generation: prompts and infilled spans come back verbatim, seeds reproduce, the samplers'
options (parallel unmasking, thresholds, blocks, reuse, guidance, top-p) do what they say."""

import dataclasses

import pytest
import torch

from diffcore.kernels.token_sampling.reference import nucleus
from diffcore.processes.mask import clean_log_probs
from difftext.conditioning import parse_template, prompt_guidance
from difftext.pipeline import TextPipeline
from difftext.training import build_model

SAMPLERS = [
    dict(steps=8),
    dict(steps=32, sampler="masked_ancestral", options={"top_p": 0.9}),
    dict(steps=32, options={"threshold": 0.5}),
    dict(steps=12, guidance=2.0, options={"block_size": 8, "grid": "cosine"}),  # 2-4 blocks
    dict(steps=4, options={"spacing": 2}),
    dict(steps=32, options={"entropy_bound": 1.0}),
]


def ids(tokenizer, text: str) -> torch.Tensor:
    """The tokens of a generated text (special tokens such as [EOS] are written out in it)."""
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])


def calls(model):
    """A counter of the model's forward passes."""
    count = [0]
    model.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    return count


@pytest.mark.parametrize(
    "settings",
    SAMPLERS,
    ids=["confidence", "masked_ancestral", "threshold", "blocks", "spacing", "entropy bound"],
)
def test_infilling_never_changes_the_given_tokens(pipe, settings):
    tok = pipe.tokenizer
    template = "To be, or [MASK*6] to be[MASK]"
    out = pipe.sample(2, prompt=[template, "[MASK*3]x"], length=32, seed=1, **settings)
    given = parse_template(template, tok, length=32)
    row = ids(tok, out[0])
    assert torch.equal(row[given.fixed], given.tokens[given.fixed])
    assert (row != tok.mask_token_id).all() and len(row) == 32
    assert out[0].startswith("To be, or ") and out[0][16:22] == " to be"
    assert out[1][3] == "x"
    # infill: the templates as written, nothing added after them
    written = parse_template(template, tok)
    filled = pipe.infill([template, "[MASK*3]x"], seed=1, **settings)
    row = ids(tok, filled[0])
    assert len(row) == len(written.tokens) == 23 and (row != tok.mask_token_id).all()
    assert torch.equal(row[written.fixed], written.tokens[written.fixed])
    assert len(filled[1]) == 4 and filled[1][3] == "x"


def test_a_prompt_is_kept_verbatim_and_the_same_seed_gives_the_same_text(pipe):
    settings = dict(length=32, steps=16, guidance=1.5, options={"top_p": 0.95})
    prompts = ["ROMEO:\n", "", "What's in a name?"]
    first = pipe.sample(3, prompt=prompts, seed=7, **settings)
    for prompt, text in zip(prompts, first, strict=True):
        assert text.startswith(prompt) and len(ids(pipe.tokenizer, text)) == 32
    again = pipe.sample(3, prompt=prompts, seed=7, **settings)
    other = pipe.sample(3, prompt=prompts, seed=8, **settings)
    assert again == first
    assert other != first
    shared = pipe.sample(2, prompt="ROMEO:\n", seed=7, **settings)  # one prompt for every text
    assert all(text.startswith("ROMEO:\n") for text in shared)


def test_parallel_unmasking_spends_one_forward_pass_per_step(pipe):
    counter = calls(pipe.model)
    pipe.sample(2, length=32, steps=8)  # 4 tokens per step
    assert counter[0] == 8
    counter[0] = 0
    pipe.sample(2, length=32)  # steps=None: one step per generated token
    assert counter[0] == 32
    counter[0] = 0
    pipe.sample(2, length=32, steps=32, options={"threshold": 1e-6})
    assert counter[0] == 1  # every candidate clears the threshold: one pass reveals all
    counter[0] = 0
    pipe.sample(2, length=32, steps=32, options={"entropy_bound": 1e3})
    assert counter[0] == 1  # every entropy fits the bound: one pass reveals all
    counter[0] = 0
    pipe.sample(2, length=32, steps=32, options={"entropy_bound": 0.0})
    assert counter[0] == 32  # an untrained model is never sure: one token per pass


def test_forward_passes_are_reused_while_no_token_changes(pipe):
    counter = calls(pipe.model)
    pipe.sample(1, length=32, steps=256, sampler="masked_ancestral")
    assert counter[0] <= 32  # at most one pass per revealed token, not one per step
    counter[0] = 0
    pipe.sample(
        1, length=32, steps=256, sampler="masked_ancestral", options={"reuse_unchanged": False}
    )
    assert counter[0] > 200  # a pass per step while any token is still masked


def test_guidance_extrapolates_from_the_prompt_masked_model(pipe, tiny_diffusion):
    tok = tiny_diffusion.tokenizer
    t = parse_template("Romeo, [MASK*8] Juliet", tok)
    x, fixed = t.tokens[None], t.fixed[None]
    d = tiny_diffusion.denoiser()
    time = torch.ones(1)
    cond, uncond = d(x, time), d(torch.where(fixed, tok.mask_token_id, x), time)
    guided = prompt_guidance(d, 3.0, fixed)(x, time)
    torch.testing.assert_close(guided, uncond + 3.0 * (cond - uncond))
    assert torch.isfinite(guided).all()  # banned tokens stay finite under extrapolation
    torch.testing.assert_close(prompt_guidance(d, 1.0, fixed)(x, time), cond)
    # through the pipeline: a guided pass runs each text with and without its prompt, and
    # guidance changes the texts; without a prompt there is nothing to guide by
    rows = []
    pipe.model.register_forward_hook(
        lambda _m, _a, kwargs, _o: rows.append(len(kwargs["input_ids"])), with_kwargs=True
    )
    prompted = dict(prompt="Romeo, [MASK*8] Juliet", length=32, steps=8, seed=2)
    guided = pipe.sample(2, guidance=300.0, **prompted)
    assert rows == [4] * 8
    assert guided != pipe.sample(2, **prompted)
    assert all(text.startswith("Romeo, ") and text[15:22] == " Juliet" for text in guided)
    rows.clear()
    plain = dict(length=32, steps=8, seed=2)
    assert pipe.sample(2, guidance=3.0, **plain) == pipe.sample(2, **plain)
    assert rows == [2] * 16


@pytest.mark.parametrize("sampler", ["masked_ancestral", "confidence"])
def test_top_p_draws_only_from_the_nucleus(pipe, sampler):
    """One step from all-masked texts draws every token from the first pass's logits: with
    top_p each lies in its position's nucleus, without it many do not."""
    tok = pipe.tokenizer
    x = torch.full((1, 32), tok.mask_token_id)
    logp = clean_log_probs(pipe.text_model.denoiser(generating=True)(x), tok.mask_token_id)[0]
    kept = nucleus(logp, 0.2)  # (32, V)
    positions = torch.arange(32)

    def outside(texts):
        rows = torch.stack([ids(tok, t) for t in texts])
        return int((~kept[positions, rows]).sum()), len(set("".join(texts)))

    settings = dict(sampler=sampler, length=32, steps=1, seed=0)
    narrow, narrow_kinds = outside(pipe.sample(8, options={"top_p": 0.2}, **settings))
    full, full_kinds = outside(pipe.sample(8, **settings))
    assert narrow == 0 and full > 50, (narrow, full)
    assert narrow_kinds < full_kinds


def test_a_vanishing_nucleus_is_greedy_decoding(pipe):
    narrow = pipe.sample(1, length=32, steps=8, options={"top_p": 1e-9}, seed=0)
    greedy = pipe.sample(1, length=32, steps=8, options={"temperature": 0}, seed=5)
    assert narrow == greedy


def test_bad_templates_and_settings_fail_clearly(pipe, char_tokenizer):
    tok = pipe.tokenizer
    with pytest.raises(ValueError, match=r"malformed span at character 3"):
        parse_template("To [MASK*x] be", tok)
    with pytest.raises(ValueError, match="is 40 tokens, longer than the length 32"):
        parse_template("a" * 40, tok, length=32)
    with pytest.raises(ValueError, match="is 40 tokens, longer than the length 32"):
        pipe.sample(1, prompt="a" * 40, length=32)
    with pytest.raises(ValueError, match="leaves nothing to generate"):
        parse_template("no spans here", tok)
    with pytest.raises(ValueError, match="'é' is not in the tokenizer's vocabulary"):
        parse_template("café [MASK]", tok)
    with pytest.raises(ValueError, match=r"writes out the special token '\[PAD\]'"):
        parse_template("a [PAD] b [MASK]", tok)
    with pytest.raises(ValueError, match="unknown token sampler 'ddpm'"):
        pipe.sample(1, sampler="ddpm")
    with pytest.raises(ValueError, match="unknown token sampler 'ancestral'"):
        pipe.sample(1, sampler="ancestral")  # renamed masked_ancestral
    with pytest.raises(ValueError, match="entropy_bound must be >= 0"):
        pipe.sample(1, options={"entropy_bound": -1.0})
    with pytest.raises(ValueError, match="sampler 'masked_ancestral' takes no option 'entropy"):
        pipe.sample(1, sampler="masked_ancestral", options={"entropy_bound": 1.0})
    with pytest.raises(ValueError, match="spacing must be an integer >= 0, got -1"):
        pipe.sample(1, options={"spacing": -1})
    with pytest.raises(ValueError, match="sampler 'masked_ancestral' takes no option 'spacing'"):
        pipe.sample(1, sampler="masked_ancestral", options={"spacing": 1})
    with pytest.raises(ValueError, match="sampler 'masked_ancestral' takes no option 'confid"):
        pipe.sample(1, sampler="masked_ancestral", options={"confidence": "entropy"})
    with pytest.raises(ValueError, match="confidence must be one of"):
        pipe.sample(1, options={"confidence": "surprise"})
    with pytest.raises(ValueError, match="sampler 'confidence' takes no option 'reuse'"):
        pipe.sample(1, options={"reuse": False})  # now reuse_unchanged
    with pytest.raises(ValueError, match="grid must be one of linear, cosine"):
        pipe.sample(1, options={"grid": "karras"})
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        pipe.sample(1, steps=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        pipe.sample(1, batch_size=0)
    with pytest.raises(ValueError, match="got 1 prompts for 2 texts"):
        pipe.sample(2, prompt=["a"])
    # semi-autoregressive blocks: the steps are rounded up so each block gets the same share
    steps = []
    pipe.sample(
        1,
        prompt="ab",
        length=32,
        steps=8,
        options={"block_size": 12},
        callback=lambda step, *_: steps.append(step.total),
    )
    assert set(steps) == {9}  # 3 blocks of 12 from the first masked token
    with pytest.raises(ValueError, match="40 tokens exceed the model's block size 32"):
        pipe.sample(1, length=40)
    peer = TextPipeline(build_model("autoregressive", char_tokenizer, 32, preset="tiny"))
    with pytest.raises(ValueError, match="only continues a prefix"):
        peer.sample(1, prompt="To be [MASK*3] be", length=32)
    with pytest.raises(ValueError, match="infilling needs a diffusion model"):
        peer.infill(["To be [MASK*3] be"])
    with pytest.raises(ValueError, match=r"takes only the options \['temperature', 'top_p'\]"):
        peer.sample(1, options={"threshold": 0.5})
    with pytest.raises(ValueError, match="sampler, steps and guidance do not apply"):
        peer.sample(1, guidance=3.0)
    with pytest.raises(ValueError, match="exceeds the autoregressive model's block size 32"):
        peer.sample(1, length=40)


def test_the_autoregressive_peer_continues_prompts_reproducibly(char_tokenizer):
    peer = TextPipeline(build_model("autoregressive", char_tokenizer, 32, preset="tiny"))
    settings = dict(length=24, options={"temperature": 0.8, "top_p": 0.9}, seed=3)
    out = peer.sample(3, prompt=["Thou", "", "Thou"], **settings)
    rows = [ids(char_tokenizer, text) for text in out]
    assert [len(r) for r in rows] == [24, 24, 24] and out[0].startswith("Thou")
    assert peer.sample(3, prompt=["Thou", "", "Thou"], **settings) == out
    never = set(range(4))  # [PAD], [UNK], [MASK], [BOS]: never generated
    assert not never & set(torch.cat(rows).tolist())


def test_finished_rows_skip_the_model_and_the_rest_keep_their_logits(tiny_diffusion):
    mask = tiny_diffusion.mask_id
    x = torch.randint(5, 20, (3, 32), generator=torch.Generator().manual_seed(0))
    x[1, 4:9] = mask  # rows 0 and 2 have nothing left to reveal
    sizes = []
    tiny_diffusion.model.register_forward_hook(
        lambda _m, _a, kwargs, _o: sizes.append(len(kwargs["input_ids"])), with_kwargs=True
    )
    skipping = tiny_diffusion.denoiser(generating=True)
    full = dataclasses.replace(skipping, skip_done=False)(x)
    logits = skipping(x)
    assert sizes == [3, 1]
    assert torch.allclose(logits[1], full[1], atol=1e-5)
    skipping(x[[0, 2]])  # nothing left anywhere: no call at all
    assert sizes == [3, 1]
