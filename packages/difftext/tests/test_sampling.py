"""Generation: prompts and infilled spans come back verbatim, seeds reproduce, the samplers'
options (parallel unmasking, thresholds, blocks, reuse, guidance, top-p) do what they say."""

import dataclasses

import pytest
import torch

from difftext.conditioning import TopP, parse_template, prompt_guidance
from difftext.pipeline import SampleConfig, build_model, generate

SAMPLERS = [
    SampleConfig(length=32, steps=8),
    SampleConfig(length=32, steps=32, sampler="ancestral", top_p=0.9),
    SampleConfig(length=32, steps=32, threshold=0.5),
    SampleConfig(length=32, steps=8, block_size=8, schedule="cosine", guidance=2.0),
    SampleConfig(length=32, steps=4, spacing=2),
    SampleConfig(length=32, steps=32, entropy_bound=1.0),
]


def calls(model):
    """A counter of the model's forward passes."""
    count = [0]
    model.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    return count


@pytest.mark.parametrize(
    "config",
    SAMPLERS,
    ids=["confidence", "ancestral", "threshold", "blocks", "spacing", "entropy bound"],
)
def test_infilling_never_changes_the_given_tokens(tiny_diffusion, config):
    tok = tiny_diffusion.tokenizer
    template = "To be, or [MASK*6] to be[MASK]"
    out = generate(tiny_diffusion, [template, "[MASK*3]x"], config, seed=1)
    given = parse_template(template, tok, length=32)
    row = out[0].tokens
    assert torch.equal(row[given.fixed], given.tokens[given.fixed])
    assert (row != tok.mask_token_id).all() and len(row) == 32
    assert out[0].text.startswith("To be, or ") and out[0].text[16:22] == " to be"
    assert out[1].text[3] == "x" and out[1].prompt == "[MASK*3]x"


def test_a_prompt_is_kept_verbatim_and_the_same_seed_gives_the_same_text(tiny_diffusion):
    config = SampleConfig(length=32, steps=16, top_p=0.95, guidance=1.5)
    prompts = ["ROMEO:\n", "", "What's in a name?"]
    first = generate(tiny_diffusion, prompts, config, seed=7)
    for prompt, g in zip(prompts, first, strict=True):
        assert g.text.startswith(prompt) and len(g.tokens) == 32
        assert g.record() == (
            {"index": g.index, "text": g.text, "prompt": prompt}
            if prompt
            else {"index": g.index, "text": g.text}
        )
    again = generate(tiny_diffusion, prompts, config, seed=7)
    other = generate(tiny_diffusion, prompts, config, seed=8)
    assert [g.text for g in again] == [g.text for g in first]
    assert [g.text for g in other] != [g.text for g in first]


def test_parallel_unmasking_spends_one_forward_pass_per_step(tiny_diffusion):
    counter = calls(tiny_diffusion.model)
    generate(tiny_diffusion, [""] * 2, SampleConfig(length=32, steps=8))  # 4 tokens per step
    assert counter[0] == 8
    counter[0] = 0
    generate(tiny_diffusion, [""] * 2, SampleConfig(length=32, steps=32, threshold=1e-6))
    assert counter[0] == 1  # every candidate clears the threshold: one pass reveals all
    counter[0] = 0
    generate(tiny_diffusion, [""] * 2, SampleConfig(length=32, steps=32, entropy_bound=1e3))
    assert counter[0] == 1  # every entropy fits the bound: one pass reveals all
    counter[0] = 0
    generate(tiny_diffusion, [""] * 2, SampleConfig(length=32, steps=32, entropy_bound=0.0))
    assert counter[0] == 32  # an untrained model is never sure: one token per pass


def test_forward_passes_are_reused_while_no_token_changes(tiny_diffusion):
    counter = calls(tiny_diffusion.model)
    many = SampleConfig(length=32, steps=256, sampler="ancestral")
    generate(tiny_diffusion, [""], many)
    assert counter[0] <= 32  # at most one pass per revealed token, not one per step
    counter[0] = 0
    generate(
        tiny_diffusion, [""], SampleConfig(length=32, steps=256, sampler="ancestral", reuse=False)
    )
    assert counter[0] > 200  # a pass per step while any token is still masked


def test_guidance_extrapolates_from_the_prompt_masked_model(tiny_diffusion):
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


def test_top_p_keeps_only_the_nucleus(tiny_diffusion):
    tok = tiny_diffusion.tokenizer
    x = parse_template("[MASK*32]", tok).tokens[None]
    logits = TopP(tiny_diffusion.denoiser(), 1e-9, 1.0, tok.mask_token_id)(x, torch.ones(1))
    kept = torch.isfinite(logits)
    kept[..., tok.mask_token_id] = False
    assert (kept.sum(-1) == 1).all()  # the most likely token alone
    # so sampling with a vanishing nucleus is greedy decoding
    narrow = generate(tiny_diffusion, [""], SampleConfig(length=32, steps=8, top_p=1e-9), seed=0)
    greedy = generate(tiny_diffusion, [""], SampleConfig(length=32, steps=8, temperature=0), seed=5)
    assert narrow[0].text == greedy[0].text


def test_bad_templates_and_settings_fail_clearly(tiny_diffusion, char_tokenizer):
    tok = tiny_diffusion.tokenizer
    with pytest.raises(ValueError, match=r"malformed span at character 3"):
        parse_template("To [MASK*x] be", tok)
    with pytest.raises(ValueError, match="is 40 tokens, longer than the length 32"):
        parse_template("a" * 40, tok, length=32)
    with pytest.raises(ValueError, match="leaves nothing to generate"):
        parse_template("no spans here", tok)
    with pytest.raises(ValueError, match="'é' is not in the tokenizer's vocabulary"):
        parse_template("café [MASK]", tok)
    with pytest.raises(ValueError, match=r"writes out the special token '\[PAD\]'"):
        parse_template("a [PAD] b [MASK]", tok)
    with pytest.raises(ValueError, match="sampler must be 'confidence' or 'ancestral'"):
        SampleConfig(sampler="ddpm")
    with pytest.raises(ValueError, match="entropy_bound must be >= 0"):
        SampleConfig(entropy_bound=-1.0)
    with pytest.raises(ValueError, match="belong to the confidence sampler"):
        SampleConfig(sampler="ancestral", entropy_bound=1.0)
    with pytest.raises(ValueError, match="spacing must be an integer >= 0, got -1"):
        SampleConfig(spacing=-1)
    with pytest.raises(ValueError, match="belong to the confidence sampler"):
        SampleConfig(sampler="ancestral", spacing=1)
    with pytest.raises(ValueError, match="belong to the confidence sampler"):
        SampleConfig(sampler="ancestral", confidence="entropy")
    with pytest.raises(ValueError, match="confidence must be one of"):
        SampleConfig(confidence="surprise")
    with pytest.raises(ValueError, match="cannot be shared evenly among 3 blocks"):
        generate(tiny_diffusion, ["ab"], SampleConfig(length=32, steps=8, block_size=12))
    peer = build_model("autoregressive", char_tokenizer, 32, preset="tiny")
    with pytest.raises(ValueError, match="only continues a prefix"):
        generate(peer, ["To be [MASK*3] be"], SampleConfig(length=32))


def test_the_autoregressive_peer_continues_prompts_reproducibly(char_tokenizer):
    peer = build_model("autoregressive", char_tokenizer, 32, preset="tiny")
    config = SampleConfig(length=24, temperature=0.8, top_p=0.9)
    out = generate(peer, ["Thou", "", "Thou"], config, seed=3)
    assert [len(g.tokens) for g in out] == [24, 24, 24] and out[0].text.startswith("Thou")
    assert [g.text for g in generate(peer, ["Thou", "", "Thou"], config, seed=3)] == [
        g.text for g in out
    ]
    never = set(range(4))  # [PAD], [UNK], [MASK], [BOS]: never generated
    assert not never & set(torch.cat([g.tokens for g in out]).tolist())


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
