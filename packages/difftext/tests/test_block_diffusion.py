"""Block diffusion (BD3-LM): a masked LM with block-causal attention, trained and scored with
every block masked on its own beside the clean tokens, and sampled block by block."""

import math

import pytest
import torch

from diffcore.training import TrainConfig
from difftext.data import Document, make_blocks, split_tail
from difftext.model import load_text_model
from difftext.pipeline import TextPipeline
from difftext.tokenizer import train_char_tokenizer
from difftext.training import build_model, fit, validate


@pytest.fixture
def block_model(char_tokenizer):
    return build_model("diffusion", char_tokenizer, 32, preset="tiny", seed=0, diffusion_block=8)


def tokens(char_tokenizer, n: int = 2, seed: int = 0) -> torch.Tensor:
    low = char_tokenizer.convert_tokens_to_ids("a")
    return torch.randint(low, low + 26, (n, 32), generator=torch.Generator().manual_seed(seed))


def test_a_block_sees_neither_later_blocks_nor_anything_but_what_training_showed_it(
    block_model, char_tokenizer
):
    """Block-causal: changing blocks after b leaves blocks <= b as they were. And the training
    layout (x_t beside the clean context, 2L positions) predicts block b exactly as the sampling
    layout does when the blocks before b are clean: what the model learns is what it uses."""
    denoiser = block_model.denoiser()
    mask = char_tokenizer.mask_token_id
    x0 = tokens(char_tokenizer)
    xt = x0.clone()
    xt[:, 1::3] = mask  # every block partly masked
    later = xt.clone()
    later[:, 16:] = mask
    with torch.no_grad():
        a, b = denoiser(xt), denoiser(later)
        torch.testing.assert_close(a[:, :16], b[:, :16])
        assert not torch.allclose(a[:, 16:], b[:, 16:])
        trained = denoiser(xt, context=x0)
        for block in range(4):
            cols = slice(8 * block, 8 * block + 8)
            view = torch.where(torch.arange(32) < 8 * block, x0, xt)  # clean before block
            torch.testing.assert_close(trained[:, cols], denoiser(view)[:, cols])
            assert torch.isfinite(trained[:, cols]).all()


def test_while_generating_the_positions_after_the_current_blocks_are_left_out(
    block_model, char_tokenizer
):
    """Rows at blocks 0 and 1: the model runs 16 positions, and their logits are the full
    pass's."""
    generating = block_model.denoiser(generating=True)
    mask = char_tokenizer.mask_token_id
    x = tokens(char_tokenizer)
    x[0, 5:] = mask
    x[1, 12:] = mask
    seen = []
    hook = block_model.model.register_forward_hook(
        lambda _m, _a, kwargs, _o: seen.append(kwargs["input_ids"].shape), with_kwargs=True
    )
    with torch.no_grad():
        try:
            short = generating(x)
        finally:
            hook.remove()
        full = block_model.denoiser()(x)
    assert seen == [(2, 16)]
    keep = [i for i in range(len(char_tokenizer)) if i not in generating.banned]
    torch.testing.assert_close(short[:, :16, keep], full[:, :16, keep])


def test_padding_keeps_every_position_finite(block_model, char_tokenizer):
    x0 = tokens(char_tokenizer)
    attention = torch.ones_like(x0)
    attention[0, 20:] = 0  # a short last document: blocks 3 and part of 2 are padding
    x0[0, 20:] = char_tokenizer.pad_token_id
    xt = torch.where(torch.arange(32) % 2 == 0, char_tokenizer.mask_token_id, x0)
    with torch.no_grad():
        for context in (None, x0):
            out = block_model.denoiser()(xt, attention_mask=attention, context=context)
            assert torch.isfinite(out).all()


def test_context_is_refused_by_a_whole_sequence_model(tiny_diffusion, char_tokenizer):
    x0 = tokens(char_tokenizer)
    with pytest.raises(ValueError, match="block-diffusion models only"):
        tiny_diffusion.denoiser()(x0, context=x0)


def test_a_tiny_block_model_learns_real_text_and_its_bound_beats_whole_sequence_masking(
    tmp_path, documents
):
    """Same tiny shape, same steps, same batches: with blocks of 4 the loss falls, the saved
    model keeps its block (the reloaded model scores the same), and the bound lies below the
    whole-sequence model's: most tokens are predicted from a clean left context."""
    train_docs, val_docs = split_tail(documents, 0.1)
    tok = train_char_tokenizer(d.text for d in train_docs)
    train_blocks = make_blocks(tok, train_docs, 32)
    val_blocks = make_blocks(tok, val_docs, 32).subset(slice(0, 48))
    run = TrainConfig(
        steps=100,
        batch_size=32,
        lr=1e-2,
        warmup=0.1,
        ema_decay=None,
        log_every=10,
        checkpoint_every=100,
    )
    finals = {}
    for block in (None, 4):
        model = build_model("diffusion", tok, 32, preset="tiny", diffusion_block=block)
        result = fit(
            model,
            train_blocks,
            run,
            tmp_path / str(block),
            val_blocks=val_blocks,
            final_samples=4,
            progress=False,
        )
        losses = [row.loss for row in result.log]
        assert losses[-1] < 0.9 * losses[0], losses
        finals[block] = result.final.bits_per_char
    loaded = load_text_model(tmp_path / "4" / "model")
    assert loaded.diffusion_block == 4
    again = validate(loaded, val_blocks, samples=4)
    assert math.isclose(again.bits_per_char, finals[4], rel_tol=1e-5)
    assert finals[4] < finals[None], finals


def test_sampling_goes_block_by_block_on_the_models_blocks(block_model, char_tokenizer):
    """A 6-token prompt: the first step fills the rest of the model's first block (6..7), and
    no token of a block is revealed before the block ahead of it is complete. The prompt stays,
    and the same seed gives the same text."""
    prompt = "To be,"
    order = []

    def spy(step, x, denoised):
        order.append(x[0].clone())

    pipe = TextPipeline(block_model)
    settings = dict(prompt=prompt, length=32, steps=16, batch_size=2, seed=3)
    out = pipe.sample(2, callback=spy, **settings)
    assert all(text.startswith(prompt) for text in out)
    mask = char_tokenizer.mask_token_id
    for x in order:
        masked = (x == mask).nonzero().flatten().tolist()
        if masked:  # nothing revealed past the block of the first masked position
            assert (x[(masked[0] // 8 + 1) * 8 :] == mask).all()
    assert (order[0][6:8] != mask).any() and (order[0][8:] == mask).all()
    assert len(order) == 16
    assert pipe.sample(2, **settings) == out


def test_block_sampling_rejects_what_would_leave_a_block_unfinished(block_model):
    pipe = TextPipeline(block_model)
    with pytest.raises(ValueError, match="block by block: use the confidence sampler"):
        pipe.sample(1, length=32, steps=32, sampler="masked_ancestral")
    with pytest.raises(ValueError, match="block_size 16 must divide the model's diffusion block"):
        pipe.sample(1, length=32, steps=32, options={"block_size": 16})
    with pytest.raises(ValueError, match="block_size applies to texts of at most the model's 32"):
        pipe.sample(1, length=80, steps=20, options={"block_size": 4})
    with pytest.raises(ValueError, match="positive divisor"):
        build_model("diffusion", block_model.tokenizer, 32, preset="tiny", diffusion_block=5)


def test_a_block_model_generates_past_its_block_size_window_by_window(block_model):
    """80 tokens from a model of 32: the prompt stays, nothing is left masked, no pass sees more
    than 32 tokens, each window (block) is one sampler call with its share of the steps, the
    same seed gives the same text, and a whole-sequence model refuses."""
    widths, steps = [], []
    model = block_model.model
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    pipe = TextPipeline(block_model)
    settings = dict(prompt=["To be,", ""], length=80, steps=20, batch_size=2, seed=5)
    try:  # 10 blocks, 2 steps each
        out = pipe.sample(2, callback=lambda step, x, _: steps.append((step, x.shape)), **settings)
    finally:
        hook.remove()
    assert out[0].startswith("To be,")
    tok = block_model.tokenizer
    rows = [torch.tensor(tok(text, add_special_tokens=False)["input_ids"]) for text in out]
    assert all(len(r) == 80 and not (r == block_model.mask_id).any() for r in rows)
    # the two prompts start their masks apart: two batches of one text, 10 windows each
    assert widths and max(widths) == 32 and len(widths) <= 40
    assert len(steps) == 40 and {step.total for step, _ in steps} == {2}
    assert {shape[1] for _, shape in steps} == {8, 16, 24, 32}  # the windows grow to 32
    assert pipe.sample(2, **settings) == out
    # steps that the blocks cannot share evenly: each block gets the next whole number
    steps.clear()
    pipe.sample(1, length=80, steps=64, callback=lambda step, *_: steps.append(step))
    assert len(steps) == 70 and {step.total for step in steps} == {7}
    steps.clear()  # steps=None: one step per generated token
    pipe.sample(1, length=80, callback=lambda step, *_: steps.append(step))
    assert len(steps) == 80 and {step.total for step in steps} == {8}
    whole = TextPipeline(build_model("diffusion", tok, 32, preset="tiny", seed=0))
    with pytest.raises(ValueError, match="any length"):
        whole.sample(1, length=80, steps=20)


def test_what_a_block_model_learned_carries_across_windows(tmp_path):
    """A tiny block model that learned a cycle of 26 letters from 32-token blocks continues it
    for 96 tokens: every window reads the letters before it."""
    text = "abcdefghijklmnopqrstuvwxyz" * 400
    tok = train_char_tokenizer([text])
    blocks = make_blocks(tok, [Document(text, "cycle")], 32)
    model = build_model("diffusion", tok, 32, preset="tiny", seed=0, diffusion_block=8)
    run = TrainConfig(steps=150, batch_size=32, lr=1e-2, warmup=0.1, ema_decay=None)
    fit(model, blocks, run, tmp_path / "run", progress=False)
    out = TextPipeline(model).sample(
        2,
        prompt=["abcdefgh", "mnopqrst"],
        length=96,
        steps=96,
        batch_size=2,
        seed=0,
        options={"temperature": 0.0},
    )
    for generated, start in zip(out, "am", strict=True):
        first = ord(start) - ord("a")
        expected = "".join(chr(ord("a") + (first + i) % 26) for i in range(96))
        assert generated == expected, generated
