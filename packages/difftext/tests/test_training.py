"""Training on real text with diffcore's loop: the loss falls, validation reports the NLL bound
in bits per character and per token, and the run leaves a loadable model."""

import json
import math

import torch

from diffcore.training import TrainConfig
from difftext.data import make_blocks, split_tail
from difftext.model import load_text_model
from difftext.tokenizer import train_char_tokenizer
from difftext.training import build_model, fit, validate


def test_a_tiny_diffusion_model_learns_real_text(tmp_path, documents):
    train_docs, val_docs = split_tail(documents, 0.1)
    tok = train_char_tokenizer(d.text for d in train_docs)
    train_blocks = make_blocks(tok, train_docs, 32)
    val_blocks = make_blocks(tok, val_docs, 32).subset(slice(0, 48))
    model = build_model("diffusion", tok, 32, preset="tiny")
    before = validate(model, val_blocks, samples=4)
    run = TrainConfig(
        steps=120,
        batch_size=32,
        lr=1e-2,
        warmup=0.1,
        ema_decay=None,
        log_every=10,
        checkpoint_every=60,
    )
    result = fit(
        model,
        train_blocks,
        run,
        tmp_path,
        val_blocks=val_blocks,
        eval_every=60,
        eval_blocks=16,
        eval_samples=2,
        final_samples=4,
        progress=False,
    )
    losses = [row.loss for row in result.log]
    assert losses[-1] < 0.9 * losses[0], losses
    # a character tokenizer: bits per token are bits per character
    final = result.final
    assert final.bound and math.isclose(final.bits_per_char, final.bits_per_token)
    assert final.characters == final.tokens == int(val_blocks.counted.sum())
    assert final.bits_per_char < 0.85 * before.bits_per_char, (before, final)
    assert final.bits_per_char < math.log2(len(tok))  # better than uniform over characters
    assert [step for step, _ in result.validation] == [60, 120]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["final"] and lines[-1]["bits_per_char"] == final.bits_per_char
    assert "val_bits_per_char" in lines[5] and lines[5]["step"] == 60
    # the saved model scores the same blocks the same way (same seed, same draws)
    again = validate(load_text_model(result.model_dir), val_blocks, samples=4)
    assert math.isclose(again.bits_per_char, final.bits_per_char, rel_tol=1e-5)


def test_the_autoregressive_peer_learns_from_the_same_blocks(tmp_path, documents):
    train_docs, val_docs = split_tail(documents, 0.1)
    tok = train_char_tokenizer(d.text for d in train_docs)
    blocks = make_blocks(tok, train_docs, 32)
    val_blocks = make_blocks(tok, val_docs, 32).subset(slice(0, 48))
    peer = build_model("autoregressive", tok, 32, preset="tiny")
    before = validate(peer, val_blocks)
    run = TrainConfig(steps=60, batch_size=32, lr=1e-2, ema_decay=None, log_every=20)
    result = fit(peer, blocks, run, tmp_path, val_blocks=val_blocks, progress=False)
    assert not result.final.bound
    assert result.final.bits_per_char < 0.8 * before.bits_per_char
    assert load_text_model(result.model_dir).kind == "autoregressive"


def test_an_expert_trains_only_on_its_masked_shares(char_tokenizer):
    from difftext.training import build_model, loss_function

    expert = build_model("diffusion", char_tokenizer, 32, preset="tiny", mask_range=(0.6, 1.0))
    shares = []
    expert.model.register_forward_pre_hook(
        lambda _m, _a, kw: shares.append((kw["input_ids"] == expert.mask_id).float().mean(1)),
        with_kwargs=True,
    )
    tokens = torch.randint(5, 60, (16, 32), generator=torch.Generator().manual_seed(0))
    loss = loss_function(expert)
    for seed in range(4):
        loss(expert.model, tokens, torch.Generator().manual_seed(seed))
    seen = torch.cat(shares)
    assert float(seen.min()) >= 0.6 - 1e-6 and float(seen.max()) <= 1.0
    assert float(seen.max() - seen.min()) > 0.25
