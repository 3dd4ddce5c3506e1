"""Text sources -> documents -> fixed-length blocks, and the errors bad inputs get."""

import json

import datasets
import pytest

from difftext.data import Document, load_documents, make_blocks, split_tail
from difftext.tokenizer import train_bpe_tokenizer, train_char_tokenizer

ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?'\n"


@pytest.fixture(scope="module")
def tok():
    return train_char_tokenizer([ALPHABET])


def test_blocks_never_span_two_documents_and_count_every_character(tok):
    docs = [Document("a" * 10, "one"), Document("b" * 3, "two"), Document("c" * 8, "three")]
    blocks = make_blocks(tok, docs, 4)
    rows = [tok.decode([t for t in row if t != tok.pad_token_id]) for row in blocks.tokens.tolist()]
    assert rows == ["aaaa", "aaaa", "aa", "bbb", "cccc", "cccc"]
    assert blocks.characters.tolist() == [4, 4, 2, 3, 4, 4]
    assert blocks.counted.sum().item() == 21 and blocks.tokens.shape == (6, 4)
    assert (blocks.tokens[2, 2:] == tok.pad_token_id).all()  # the short tail is padded


def test_packing_joins_documents_with_an_end_of_document_token(tok):
    docs = [Document("a" * 5, "one"), Document("b" * 3, "two")]
    blocks = make_blocks(tok, docs, 4, packing="pack")
    assert tok.decode(blocks.tokens[blocks.counted].tolist()) == "aaaaa[EOS]bbb[EOS]"
    assert blocks.tokens.shape == (3, 4) and blocks.characters.sum().item() == 8 + 2


def test_bpe_blocks_account_for_every_character(tmp_path):
    text = "To be, or not to be: that is the question.\n" * 30
    bpe = train_bpe_tokenizer([text], vocab_size=300)
    blocks = make_blocks(bpe, [Document(text, "x"), Document("Whether 'tis nobler", "y")], 16)
    assert blocks.characters.sum().item() == len(text) + len("Whether 'tis nobler")
    assert blocks.counted.sum().item() < blocks.characters.sum().item() / 2  # tokens span chars


def test_text_files_load_by_document_paragraph_or_line(tmp_path):
    (tmp_path / "b.txt").write_text("second file\n")
    (tmp_path / "a.txt").write_text("para one\nstill one\n\npara two\n")
    whole = load_documents(tmp_path)  # a folder: its text files, sorted
    assert [d.text for d in whole] == ["para one\nstill one\n\npara two\n", "second file\n"]
    assert whole[0].source.endswith("a.txt")
    paragraphs = load_documents(tmp_path / "a.txt", sample_by="paragraph")
    assert [d.text for d in paragraphs] == ["para one\nstill one", "para two\n"]
    lines = load_documents(tmp_path / "a.txt", sample_by="line")
    assert [d.text for d in lines] == ["para one", "still one", "para two"]  # blank line skipped


def test_tables_load_their_text_column(tmp_path):
    datasets.Dataset.from_dict({"body": ["alpha", "", "beta"], "id": [1, 2, 3]}).to_parquet(
        tmp_path / "t.parquet"
    )
    (tmp_path / "t.jsonl").write_text(json.dumps({"text": "gamma"}) + "\n")
    docs = load_documents(tmp_path / "t.parquet", text_column="body")
    assert [d.text for d in docs] == ["alpha", "beta"]  # the empty cell is skipped
    assert docs[1].source.endswith("t.parquet row 2")
    assert [d.text for d in load_documents([tmp_path / "t.jsonl"])] == ["gamma"]
    with pytest.raises(ValueError, match=r"t\.parquet has no column 'text'.*\['body', 'id'\]"):
        load_documents(tmp_path / "t.parquet")
    with pytest.raises(ValueError, match=r"t\.parquet row 0: column 'id' must hold text"):
        load_documents(tmp_path / "t.parquet", text_column="id")


def test_bad_files_fail_naming_the_file_and_the_place(tmp_path, tok):
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match=r"empty\.txt is empty"):
        load_documents(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("line one\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt is not UTF-8.*0xe9 at byte 12 \(line 2\)"):
        load_documents(tmp_path / "latin1.txt")
    with pytest.raises(FileNotFoundError, match="missing.txt does not exist"):
        load_documents(tmp_path / "missing.txt")
    (tmp_path / "data.xml").write_text("<a/>")
    with pytest.raises(ValueError, match=r"unknown text source type '\.xml'"):
        load_documents(tmp_path / "data.xml")
    with pytest.raises(ValueError, match=r"notes\.txt.*special token '\[MASK\]'.*character 6"):
        make_blocks(tok, [Document("hello [MASK] there", "notes.txt")], 8)
    with pytest.raises(ValueError, match="block_size must be an integer >= 2"):
        make_blocks(tok, [Document("hello", "x")], 1)


def test_tiny_shakespeare_splits_at_ninety_percent_of_its_characters(shared_data):
    docs = load_documents(shared_data / "tinyshakespeare" / "input.txt")
    assert len(docs) == 1 and len(docs[0].text) == 1_115_394
    train, val = split_tail(docs, 0.1)
    assert len(train[0].text) == 1_003_855 and train[0].text + val[0].text == docs[0].text
    assert val[0].text.startswith(docs[0].text[1_003_855:1_003_900])
    with pytest.raises(ValueError, match=r"fraction must lie in \(0, 1\)"):
        split_tail(docs, 1.5)
