"""Fuzzing the sequence readers: FASTA, A3M and Stockholm text with empty records, bad
characters (including non-ASCII letters ``str.upper`` turns into ASCII: 'ı' -> 'I', 'ß' ->
'SS'), huge lines, CRLF, Latin-1 bytes and empty headers give a ValueError naming the file or
exactly the records an independent reading of the text gives, never another exception type, a
hang or a wrong sequence.

The seed corpus is made here. Run with ``--hypothesis-show-statistics`` to see how many cases ran.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from diffprotein.alphabet import AMINO_ACIDS, normalize_residue
from diffprotein.data import ReadOptions, read_dataset, read_sequences

FUZZ = settings(max_examples=200)  # deterministic: the root conftest's hypothesis profile
# Residues, lowercase inserts, gaps, a stop, and characters that are no residue: digits,
# punctuation, and non-ASCII letters that str.upper() maps to ASCII ones (ı -> I, ß -> SS,
# ſ -> S, ﬀ -> FF, K (Kelvin sign) is itself uppercase).
CHARS = AMINO_ACIDS + AMINO_ACIDS.lower() + "BZJUOXbzjuox" + "-.*" + " \t" + "1@#" + "ıßſﬀéÅK"
IDS = st.text("abcXYZ019_|/-:=.", max_size=6)


def _expected(raw: str) -> str | None:
    """The sequence a FASTA record's text stands for, or None when it must be refused."""
    raw = "".join(c for c in raw if c not in " \t-.")
    raw = raw[:-1] if raw.endswith("*") else raw
    letters = [normalize_residue(c.upper()) if c.isascii() else None for c in raw]
    if not letters or None in letters:
        return None
    return "".join(letters)


@st.composite
def fasta(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    """FASTA text (random line widths, blank lines) and its (id, sequence text) records."""
    records = draw(st.lists(st.tuples(IDS, st.text(CHARS, max_size=30)), max_size=4))
    width = draw(st.integers(1, 12))
    lines = []
    for rid, seq in records:
        lines.append(f">{rid} desc" if rid else ">")  # "> desc" would have the id "desc"
        lines += [seq[i : i + width] for i in range(0, len(seq), width)]
        lines += [""] * draw(st.integers(0, 1))
    return "\n".join(lines) + "\n", records


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _read(path: Path) -> list[tuple[str, str]] | None:
    """(id, sequence) of each record, or None after a ValueError naming the file."""
    try:
        records = read_sequences(path).records
    except ValueError as err:
        assert str(path) in str(err), f"the error does not name the file: {err}"
        return None
    for r in records:
        assert r.id and r.sequence and set(r.sequence) <= set(AMINO_ACIDS + "X"), r
    return [(r.id, r.sequence) for r in records]


@FUZZ
@given(fasta(), st.sampled_from(["\n", "\r\n", "\r"]), st.sampled_from(["utf-8", "latin-1"]))
@example((">a\nAıK\n", [("a", "AıK")]), "\n", "utf-8")  # read as "AIK"
@example((">a\nßA\n", [("a", "ßA")]), "\n", "utf-8")  # read as "SSA"
@example((">a\nAé\n", [("a", "Aé")]), "\n", "latin-1")  # not UTF-8: UnicodeDecodeError
@example((">\nACD\n", [("", "ACD")]), "\n", "utf-8")  # an empty header: a record with no id
@example((">a\n" + "ACDEFGHIKL" * 20_000 + "\n", [("a", "ACDEFGHIKL" * 20_000)]), "\r\n", "utf-8")
def test_fasta_text_gives_its_records_or_a_named_error(folder, case, newline, encoding):
    text, records = case
    path = folder / "fuzz.fasta"
    path.write_bytes(text.replace("\n", newline).encode(encoding, errors="replace"))
    got = _read(path)
    expected = [(rid, _expected(seq)) for rid, seq in records]
    decodable = encoding == "utf-8" or text.isascii()
    if records and decodable and all(rid and seq for rid, seq in expected):
        assert got == expected
    else:
        assert got is None  # no records, an empty id, a bad residue or bytes that are not UTF-8


A3M = ">query\nMKV-LA\n>hit1\nMKvwV-LA\n>hit2\nM-V-LA\n"
STOCKHOLM = """# STOCKHOLM 1.0
#=GF ID   Kunitz_BPTI
#=GF AC   PF00014
#=GS seq1/1-10 DE a description
seq1/1-10      AC.DEfg-HIK
seq2/3-12      ACcDE..-HIK
#=GC SS_cons   ...HHH.....
//
"""
SEEDS = {"seed.a3m": A3M, "seed.sto": STOCKHOLM, "seed.fasta": ">x\nACDE\n>y\nFGHI*\n"}


@st.composite
def damaged(draw: st.DrawFn) -> tuple[str, bytes]:
    """A seed file with lines dropped, doubled or cut, bytes overwritten, maybe gzipped."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    lines = SEEDS[name].splitlines(keepends=True)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "double", "cut", "crlf"]))
        if action == "drop" and len(lines) > 1:
            del lines[at]
        elif action == "double":
            lines.insert(at, lines[at])
        elif action == "cut":
            lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))]
        else:
            lines[at] = lines[at].replace("\n", "\r\n")
    data = bytearray("".join(lines).encode())
    for _ in range(draw(st.integers(0, 3))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    data += draw(st.binary(max_size=4))
    if draw(st.booleans()):
        whole = gzip.compress(bytes(data))
        return name + ".gz", whole[: draw(st.integers(0, len(whole)))] if draw(
            st.booleans()
        ) else whole
    return name, bytes(data)


@FUZZ
@given(damaged())
@example(("seed.sto", b""))
@example(("seed.sto", b"# STOCKHOLM 1.0\n//\n"))  # an alignment with no sequences
@example(("seed.sto", STOCKHOLM.replace("//\n", "").encode()))  # no end line
@example(("seed.sto", b"# STOCKHOLM 1.0\nseq1 AC\nseq1 DEF\n//\n"))  # a name twice, lengths differ
@example(("seed.sto.gz", gzip.compress(STOCKHOLM.encode())[:20]))  # a truncated gzip stream
@example(("seed.a3m.gz", b"not gzip at all"))
def test_damaged_sequence_files_give_records_or_a_named_error(folder, case):
    name, data = case
    for old in folder.iterdir():  # one file a case: the name says its format
        old.unlink()
    path = folder / name
    path.write_bytes(data)
    _read(path)


def test_the_seed_files_read_as_their_records(folder):
    for name, text in SEEDS.items():
        path = folder / name
        path.write_text(text)
        assert _read(path), name
    assert _read(folder / "seed.sto") == [("seq1/1-10", "ACDEFGHIK"), ("seq2/3-12", "ACCDEHIK")]


def test_skipped_records_with_non_ascii_letters_are_counted_not_read(folder):
    path = folder / "mixed.fasta"
    path.write_text(">a\nACD\n>b\nAıK\n>c\nßA\n")
    data = read_sequences(path, ReadOptions(on_error="skip"))
    assert [r.sequence for r in data.records] == ["ACD"] and data.skipped["invalid"] == 2


# Tables through `datasets` (each case builds a cache entry, so these are chosen, not generated)
@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("ragged.csv", b'sequence,family\nACD,a,b,c\n"x\n'),  # DatasetGenerationError
        ("binary.csv", b"\xff\xfe\x00garbage"),
        ("empty.csv", b""),
        ("mixed.jsonl", b'{"sequence": 5}\n[1]\n'),
        ("latin1.csv", b"sequence,family\nACD,caf\xe9\n"),
        ("no-family.csv", b"sequence,family\nACD,a\nEFG,\n"),  # family None, read as "None"
    ],
)
def test_damaged_tables_give_a_named_error(folder, name, data):
    path = folder / name
    path.write_bytes(data)
    with pytest.raises(ValueError, match=name):
        read_dataset(path, family_column="family")


def test_a_crlf_table_gives_its_records(folder):
    path = folder / "crlf.csv"
    path.write_bytes(b"sequence,family\r\nACD,a\r\nefg*,b\r\n")
    records = read_dataset(path, family_column="family").records
    assert [(r.sequence, r.family) for r in records] == [("ACD", "a"), ("EFG", "b")]
