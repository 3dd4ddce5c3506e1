"""Tokenizers: trained locally, saved to a directory, loaded back through AutoTokenizer."""

import threading
import time

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from diffcore.io import atomic_directory
from difftext.tokenizer import (
    SPECIAL_TOKENS,
    load_tokenizer,
    run_tokenizer,
    train_bpe_tokenizer,
    train_char_tokenizer,
)

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\tSpeak, speak.  "
ODD = "naïve café — 東京 🎭\r\n"


def test_char_tokenizer_round_trips_through_a_directory(tmp_path):
    tok = train_char_tokenizer([TEXT])
    assert isinstance(tok, PreTrainedTokenizerFast)
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(TEXT)  # one token per character, none added
    tok.save_pretrained(tmp_path)
    for loaded in (load_tokenizer(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert loaded(TEXT, add_special_tokens=False)["input_ids"] == ids
        assert loaded.decode(ids) == TEXT  # whitespace, tabs and newlines kept exactly
        assert loaded.mask_token == SPECIAL_TOKENS["mask_token"]
        assert loaded.pad_token_id == 0
    # characters never seen in training become [UNK], one per character
    assert tok("Zé", add_special_tokens=False)["input_ids"] == [tok.unk_token_id] * 2


def test_bpe_tokenizer_round_trips_any_text_exactly(tmp_path):
    tok = train_bpe_tokenizer([TEXT * 50], vocab_size=300)
    tok.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    for text in (TEXT, ODD):  # unseen characters too: every byte is in the base alphabet
        ids = loaded(text, add_special_tokens=False)["input_ids"]
        assert ids == tok(text, add_special_tokens=False)["input_ids"]
        assert loaded.decode(ids) == text
        assert loaded.unk_token_id not in ids
    assert len(loaded(TEXT, add_special_tokens=False)["input_ids"]) < len(TEXT) / 2  # merges learnt
    assert len(loaded) <= 300


def test_tokenizers_refuse_what_they_cannot_be(tmp_path):
    with pytest.raises(ValueError, match="at least 261 tokens"):
        train_bpe_tokenizer([TEXT], vocab_size=100)
    with pytest.raises(ValueError, match="empty text"):
        train_char_tokenizer(["", ""])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "nowhere")


def test_a_tokenizer_without_a_mask_token_is_refused_by_name(tmp_path):
    tok = train_char_tokenizer([TEXT])
    bare = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, pad_token="[PAD]")
    bare.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"has no mask_token.*absorbing state"):
        load_tokenizer(tmp_path)


def test_a_run_saves_its_tokenizer_whole_and_resumes_with_it(tmp_path):
    first = run_tokenizer("char", [TEXT], tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer"]  # no temporary left
    again = run_tokenizer("char", [ODD], tmp_path)  # the saved one, not one trained on ODD
    assert again.get_vocab() == first.get_vocab()


def test_other_ranks_wait_for_the_tokenizer_rank_0_saves(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    made = train_char_tokenizer([TEXT])

    def rank_0() -> None:  # saves a moment after rank 1 started waiting
        time.sleep(0.3)
        with atomic_directory(tmp_path / "tokenizer") as tmp:
            made.save_pretrained(tmp)

    saver = threading.Thread(target=rank_0)
    saver.start()
    got = run_tokenizer("char", [ODD], tmp_path)  # rank 1 trains nothing of its own
    saver.join()
    assert got.get_vocab() == made.get_vocab()
