"""The denoiser is a transformers masked LM; continued pre-training starts from a checkpoint on
disk; the autoregressive peer has the same shape."""

import pytest
import torch
from transformers import AutoModelForMaskedLM, BertConfig

from diffcore.training import TrainConfig
from difftext.data import Document, make_blocks
from difftext.model import (
    BANNED_LOGIT,
    TextModel,
    causal_lm_config,
    dropout_of,
    load_preset,
    load_text_model,
    masked_lm_config,
    save_text_model,
    set_dropout,
)
from difftext.training import build_model, fit


def test_a_masked_lm_from_config_is_a_token_denoiser(tiny_diffusion):
    tok = tiny_diffusion.tokenizer
    assert type(tiny_diffusion.model).__name__ == "ModernBertForMaskedLM"
    denoiser = tiny_diffusion.denoiser()
    x = tok(["To be, or not to be, that is the"], add_special_tokens=False, return_tensors="pt")
    x = x["input_ids"]
    logits = denoiser(x, torch.ones(1))
    assert logits.shape == (1, x.shape[1], len(tok))
    for special in (tok.pad_token_id, tok.mask_token_id, tok.bos_token_id):
        assert (logits[..., special] == BANNED_LOGIT).all()  # never generated
    assert (logits[..., tok.eos_token_id] != BANNED_LOGIT).all()
    # hide= masks positions exactly as if the mask token were written there
    hide = torch.zeros_like(x, dtype=torch.bool)
    hide[:, 3:9] = True
    written = torch.where(hide, tok.mask_token_id, x)
    torch.testing.assert_close(denoiser(x, torch.ones(1), hide=hide), denoiser(written, None))


def test_the_autoregressive_peer_has_the_denoisers_shape(char_tokenizer):
    masked = build_model("diffusion", char_tokenizer, 64, preset="small").model
    causal = build_model("autoregressive", char_tokenizer, 64, preset="small").model
    assert type(causal).__name__ == "GPT2LMHeadModel"
    c, m = causal.config, masked.config
    assert (c.n_embd, c.n_layer, c.n_head, c.n_positions) == (
        m.hidden_size,
        m.num_hidden_layers,
        m.num_attention_heads,
        64,
    )
    sizes = [sum(p.numel() for p in model.parameters()) for model in (masked, causal)]
    assert abs(sizes[0] - sizes[1]) <= c.n_layer * (2 * c.n_embd + 1)  # within one unit of width


def test_dropout_regularises_both_kinds_and_only_in_training(char_tokenizer):
    x = torch.randint(5, len(char_tokenizer), (2, 32), generator=torch.Generator().manual_seed(0))
    for kind in ("diffusion", "autoregressive"):
        plain = build_model(kind, char_tokenizer, 32, preset="tiny").model
        model = build_model(kind, char_tokenizer, 32, preset="tiny", dropout=0.2).model
        config = model.config
        residual = [
            getattr(config, n)
            for n in ("embedding_dropout", "mlp_dropout", "resid_pdrop", "embd_pdrop")
            if hasattr(config, n)
        ]
        attention = [
            getattr(config, n) for n in ("attention_dropout", "attn_pdrop") if hasattr(config, n)
        ]
        assert len(residual) == 2 and all(p == 0.2 for p in residual), kind
        assert attention == [0.0], kind  # keeps attention on its fused kernels
        model.train()
        with torch.no_grad():
            a, b = model(input_ids=x).logits, model(input_ids=x).logits
        assert not torch.equal(a, b)  # two training passes drop different units
        model.eval()
        with torch.no_grad():
            assert torch.equal(model(input_ids=x).logits, model(input_ids=x).logits)
        plain.train()
        with torch.no_grad():  # the default stays dropout-free
            assert torch.equal(plain(input_ids=x).logits, plain(input_ids=x).logits)


def test_dropout_is_refused_for_a_model_loaded_from_disk(tmp_path, tiny_diffusion):
    save_text_model(tiny_diffusion, tmp_path / "m")
    with pytest.raises(ValueError, match="fresh models"):
        build_model("diffusion", None, 32, init_from=tmp_path / "m", dropout=0.1)


def test_continued_pretraining_starts_from_a_checkpoint_saved_on_disk(tmp_path, char_tokenizer):
    # a "pretrained" masked LM saved the transformers way, with its tokenizer
    config = BertConfig(
        vocab_size=len(char_tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(3)
    pretrained = AutoModelForMaskedLM.from_config(config)
    pretrained.save_pretrained(tmp_path / "pretrained")
    char_tokenizer.save_pretrained(tmp_path / "pretrained")

    start = build_model("diffusion", None, 32, init_from=tmp_path / "pretrained")
    for (name, a), b in zip(
        pretrained.state_dict().items(), start.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    blocks = make_blocks(start.tokenizer, [Document("to be or not to be " * 20, "x")], 32)
    run = TrainConfig(steps=3, batch_size=4, lr=1e-2, ema_decay=None, log_every=1)
    result = fit(start, blocks, run, tmp_path / "run", progress=False)
    tuned = load_text_model(result.model_dir)
    before = pretrained.bert.embeddings.word_embeddings.weight
    assert not torch.equal(tuned.model.bert.embeddings.word_embeddings.weight, before)
    assert tuned.kind == "diffusion" and tuned.block_size == 32
    with pytest.raises(ValueError, match="at most 64 positions"):
        build_model("diffusion", None, 128, init_from=tmp_path / "pretrained")


def test_a_model_directory_round_trips_and_pickles_are_refused(tmp_path, tiny_diffusion):
    save_text_model(tiny_diffusion, tmp_path / "model")
    loaded = load_text_model(tmp_path)  # a run folder stands for its model/ folder
    x = torch.randint(5, len(loaded.tokenizer), (2, 32))
    torch.testing.assert_close(
        loaded.model(input_ids=x).logits, tiny_diffusion.model.eval()(input_ids=x).logits
    )
    (tmp_path / "model" / "model.safetensors").rename(tmp_path / "model" / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"only pytorch_model\.bin: pickles are never loaded"):
        load_text_model(tmp_path / "model")
    assert isinstance(loaded, TextModel)


def test_attention_dropout_is_set_apart_and_inherited_by_the_peer(char_tokenizer):
    config = masked_lm_config(load_preset("tiny"), char_tokenizer, 32)
    set_dropout(config, 0.1, attention=0.3)
    assert (config.mlp_dropout, config.attention_dropout) == (0.1, 0.3)
    assert (dropout_of(config), dropout_of(config, attention=True)) == (0.1, 0.3)
    peer = causal_lm_config(config, char_tokenizer, 32)
    assert (peer.resid_pdrop, peer.embd_pdrop, peer.attn_pdrop) == (0.1, 0.1, 0.3)
    with pytest.raises(ValueError, match="attention must lie in"):
        set_dropout(config, 0.1, attention=1.0)
