"""Text in: plain text files and Hugging Face datasets with a text column -> documents ->
tokenized fixed-length blocks that respect document boundaries.

Sources (``load_documents``), read offline through ``datasets``' packaged loaders:

- ``.txt`` / ``.text`` / ``.md`` files, or a folder of them: the ``text`` loader, one document per
  file (``sample_by="document"``), per paragraph (``"paragraph"``: split at blank lines) or per
  line (``"line"``, line breaks dropped);
- ``.parquet``, ``.jsonl`` / ``.json``, ``.csv`` tables: the loader of that name, one document per
  row of ``text_column``;
- a folder written by ``datasets.Dataset.save_to_disk``.

Policies (errors name the file and, for tables, the row):

- an empty or undecodable (not UTF-8) file, a missing column or a non-string cell is an error;
- empty documents (blank lines, empty cells) are skipped; if nothing is left, that is an error;
- text that holds a special token of the tokenizer written out (``[MASK]``, ``[PAD]``...) is an
  error: it would be read as that token;
- blocks never span two documents (``packing="pad"``): a document is cut into blocks of
  ``block_size`` tokens and its last, shorter block (or a whole document shorter than a block) is
  filled with padding, which is neither attended to nor scored. ``packing="pack"`` instead joins
  the documents with an end-of-document token (EOS, else SEP) and cuts the stream into blocks, so
  short documents waste no compute; the boundary is then a token the model sees and scores.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import datasets
import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from diffcore.io import find_files

__all__ = [
    "Document",
    "Packing",
    "SampleBy",
    "TokenBlocks",
    "load_documents",
    "make_blocks",
    "split_tail",
]

SampleBy = Literal["document", "paragraph", "line"]
Packing = Literal["pad", "pack"]
TEXT_SUFFIXES = (".txt", ".text", ".md")
TABLE_LOADERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


@dataclass(frozen=True)
class Document:
    """One document's text and where it came from (``"path"`` or ``"path row 12"``)."""

    text: str
    source: str


def _check_text_file(path: Path) -> None:
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    if not data.strip():
        raise ValueError(f"{path} is empty (or holds only whitespace): no text to learn from")
    if b"\x00" in data:  # valid UTF-8, but no text holds a NUL: a binary file
        at = data.index(b"\x00")
        raise ValueError(f"{path} is not text: a NUL byte at byte {at}; expected a UTF-8 text file")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{path} is not UTF-8 text: undecodable byte 0x{data[err.start]:02x} at byte "
            f"{err.start} (line {line}); convert it first, e.g. iconv -f latin1 -t utf-8"
        ) from None


def _expand(sources: Sequence[str | os.PathLike]) -> list[Path]:
    """Files named by ``sources``; a folder stands for its text files (sorted), or for a saved
    dataset when it holds ``dataset_info.json``."""
    if isinstance(sources, str | os.PathLike):
        sources = [sources]
    files: list[Path] = []
    for source in map(Path, sources):
        saved = source.is_dir() and (source / "dataset_info.json").is_file()
        files += [source] if saved else find_files([source], TEXT_SUFFIXES, what="text")
    if not files:
        raise ValueError("no text sources given")
    return files


def _table_documents(dataset: datasets.Dataset, where: Path, column: str) -> list[Document]:
    if column not in dataset.column_names:
        raise ValueError(
            f"{where} has no column {column!r}; its columns are {dataset.column_names} "
            f"(choose one with text_column=...)"
        )
    docs = []
    for row, value in enumerate(dataset[column]):
        if value is not None and not isinstance(value, str):
            raise ValueError(
                f"{where} row {row}: column {column!r} must hold text, got "
                f"{type(value).__name__} {value!r:.60}"
            )
        docs.append(Document(value or "", f"{where} row {row}"))
    return docs


def load_documents(
    sources: Sequence[str | os.PathLike] | str | os.PathLike,
    *,
    text_column: str = "text",
    sample_by: SampleBy = "document",
) -> list[Document]:
    """Documents from text files, folders, tables and saved datasets, in the order given
    (folders sorted by path). Empty documents are skipped. See the module docstring."""
    if sample_by not in ("document", "paragraph", "line"):
        raise ValueError(f"sample_by must be 'document', 'paragraph' or 'line', got {sample_by!r}")
    datasets.disable_progress_bars()
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False  # local files: no "download count" request
    docs: list[Document] = []
    for path in _expand(sources):
        suffix = path.suffix.lower()
        if path.is_dir():
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
            docs += _table_documents(loaded, path, text_column)
        elif suffix in TABLE_LOADERS:
            table = datasets.load_dataset(
                TABLE_LOADERS[suffix], data_files=[str(path)], split="train"
            )
            docs += _table_documents(table, path, text_column)
        elif suffix in TEXT_SUFFIXES:
            _check_text_file(path)
            rows = datasets.load_dataset(  # utf-8-sig: a BOM is not the text's first letter
                "text",
                data_files=[str(path)],
                sample_by=sample_by,
                split="train",
                encoding="utf-8-sig",
            )["text"]
            if sample_by == "document":
                docs.append(Document(rows[0], str(path)))
            else:
                docs += [Document(t, f"{path} {sample_by} {i}") for i, t in enumerate(rows)]
        else:
            known = ", ".join((*TEXT_SUFFIXES, *TABLE_LOADERS))
            raise ValueError(f"{path}: unknown text source type {suffix!r}; expected {known}")
    kept = [d for d in docs if d.text]
    if not kept:
        raise ValueError(f"no text in {', '.join(str(s) for s in _expand(sources))}")
    return kept


def split_tail(
    documents: Sequence[Document], fraction: float
) -> tuple[list[Document], list[Document]]:
    """Hold out the last ``fraction`` of all characters (in document order) for validation:
    (train, validation). A document that straddles the cut is split at it (Tiny Shakespeare's
    convention: first 90% of characters train, last 10% validate)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the validation fraction must lie in (0, 1), got {fraction}")
    total = sum(len(d.text) for d in documents)
    cut = round(total * (1.0 - fraction))
    train, val, seen = [], [], 0
    for doc in documents:
        lo, hi = seen, seen + len(doc.text)
        if hi <= cut:
            train.append(doc)
        elif lo >= cut:
            val.append(doc)
        else:
            train.append(Document(doc.text[: cut - lo], doc.source))
            val.append(Document(doc.text[cut - lo :], f"{doc.source} from character {cut - lo}"))
        seen = hi
    if not train or not val:
        raise ValueError(
            f"{total} characters are too few to hold out {fraction:.0%} for validation"
        )
    return train, val


@dataclass(frozen=True)
class TokenBlocks:
    """Fixed-length token blocks.

    tokens: (N, L) long, ``pad_id`` after the end of a document (never inside text);
    characters: (N,) long, the characters of text each block stands for (its share of the
    document; an end-of-document token counts as one), so bits per character are
    ``total bits / characters.sum()``.
    """

    tokens: Tensor
    characters: Tensor
    pad_id: int

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def counted(self) -> Tensor:
        """(N, L) bool: True at real tokens (not padding)."""
        return self.tokens != self.pad_id

    def subset(self, rows: slice | Tensor) -> TokenBlocks:
        return TokenBlocks(self.tokens[rows], self.characters[rows], self.pad_id)


def _per_token_characters(offsets: Sequence[tuple[int, int]], length: int) -> list[int]:
    """Characters each token accounts for: from its start to the next token's start (the first
    also takes any text before it, the last everything after it), so they sum to ``length``."""
    starts = [0] + [start for start, _ in offsets[1:]] + [length]
    return [b - a for a, b in zip(starts, starts[1:], strict=False)][: len(offsets)]


def _cut(ids: list[int], chars: list[int], size: int, pad: int) -> Iterable[tuple[list[int], int]]:
    for lo in range(0, len(ids), size):
        piece = ids[lo : lo + size]
        yield piece + [pad] * (size - len(piece)), sum(chars[lo : lo + size])


def make_blocks(
    tokenizer: PreTrainedTokenizerBase,
    documents: Sequence[Document],
    block_size: int,
    *,
    packing: Packing = "pad",
) -> TokenBlocks:
    """Tokenize ``documents`` (no special tokens added) and cut them into blocks of
    ``block_size`` tokens; see the module docstring for ``packing``."""
    if not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"block_size must be an integer >= 2, got {block_size!r}")
    if packing not in ("pad", "pack"):
        raise ValueError(f"packing must be 'pad' or 'pack', got {packing!r}")
    if not documents:
        raise ValueError("no documents to cut into blocks")
    pad = tokenizer.pad_token_id
    if pad is None:
        raise ValueError("the tokenizer has no padding token; blocks need one")
    forbidden = {
        i: tokenizer.convert_ids_to_tokens(i)
        for r in ("pad", "mask", "bos", "cls")
        if (i := getattr(tokenizer, f"{r}_token_id", None)) is not None
    }
    separator = (
        tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    )
    if packing == "pack" and separator is None:
        raise ValueError("packing='pack' needs an EOS or SEP token to mark document ends")
    encoded = tokenizer(
        [d.text for d in documents],
        add_special_tokens=False,
        return_offsets_mapping=True,
        verbose=False,
    )
    rows: list[list[int]] = []
    characters: list[int] = []
    stream_ids: list[int] = []
    stream_chars: list[int] = []
    for doc, ids, offsets in zip(
        documents, encoded["input_ids"], encoded["offset_mapping"], strict=True
    ):
        for pos, token in enumerate(ids):
            if token in forbidden:
                raise ValueError(
                    f"{doc.source}: the text holds the tokenizer's special token "
                    f"{forbidden[token]!r} written out (at character {offsets[pos][0]}); remove "
                    "it or use a tokenizer whose special tokens cannot occur in the text"
                )
        chars = _per_token_characters(offsets, len(doc.text))
        if packing == "pad":
            for block, n in _cut(ids, chars, block_size, pad):
                rows.append(block)
                characters.append(n)
        else:
            stream_ids += [*ids, separator]
            stream_chars += [*chars, 1]
    if packing == "pack":
        for block, n in _cut(stream_ids, stream_chars, block_size, pad):
            rows.append(block)
            characters.append(n)
    if not rows:
        raise ValueError("the documents produced no tokens")
    return TokenBlocks(torch.tensor(rows, dtype=torch.long), torch.tensor(characters), pad)


def read_texts(path: str | os.PathLike, *, jsonl_only: bool = False) -> list[str]:
    """Texts of a file: the ``text`` field of each line of a ``.jsonl`` file (what ``diffuse
    sample text`` writes), else each non-blank line (an error with ``jsonl_only``). Errors name
    the file and line."""
    import json

    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist (expected a file of texts)")
    try:
        # split on newlines only: str.splitlines() also cuts at U+2028, which JSON keeps raw
        lines = source.read_text(encoding="utf-8-sig").split("\n")
    except UnicodeDecodeError as err:
        raise ValueError(f"{source} is not UTF-8 text ({err})") from None
    if source.suffix.lower() != ".jsonl":
        if jsonl_only:
            raise ValueError(f"{source} is not a .jsonl file of objects with a `text` field")
        return [line for line in lines if line.strip()]
    texts = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(
                    f"{source}:{number}: expected a JSON object with a `text` field ({err})"
                ) from None
            if not isinstance(text, str):
                raise ValueError(f"{source}:{number}: the `text` field holds {text!r}, not text")
            texts.append(text)
    if not texts:
        raise ValueError(f"{source} holds no texts")
    return texts


def write_jsonl(records: Iterable[dict], path: str | os.PathLike) -> Path:
    """Write one JSON object per line (UTF-8, characters as they are); returns the path."""
    import json

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return target


def load_splits(
    sources: Sequence[str | os.PathLike],
    val_sources: Sequence[str | os.PathLike] = (),
    *,
    val_fraction: float = 0.1,
    **options: object,
) -> tuple[list[Document], list[Document]]:
    """(training, validation) documents: those of ``sources`` and of ``val_sources``, or without
    ``val_sources`` the last ``val_fraction`` of the characters of ``sources`` held out
    (:func:`split_tail`). ``options``: ``load_documents``'s (text_column, sample_by)."""
    docs = load_documents(sources, **options)
    if val_sources:
        return docs, load_documents(val_sources, **options)
    return split_tail(docs, val_fraction)
