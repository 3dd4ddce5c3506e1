"""Protein sequences in and out: FASTA, A2M/A3M, Stockholm and Hugging Face datasets.

Every reader returns a :class:`ProteinSet` of :class:`ProteinRecord` whose sequences are
normalized the same way:

- whitespace and alignment gaps (``-`` and ``.``) are removed;
- lowercase letters are insert states in A2M, A3M and Stockholm files: kept by default
  (``inserts="keep"``: the full natural sequence, as a sequence model wants) or dropped
  (``inserts="drop"``: match columns only, as a profile model wants); in plain FASTA lowercase is
  only a display convention and is uppercased;
- one trailing ``*`` (a translation's stop codon) is removed;
- letters follow the residue policy of :mod:`diffprotein.alphabet` (B/Z/J -> X, U -> C, O -> K).

A record with any other character, an empty record or one longer than ``max_length`` is an
error naming the file and the record id; with ``on_error="skip"`` it is skipped instead and
counted in ``ProteinSet.skipped`` (reason -> count).

Family labels come from ``ReadOptions.family`` if set, else from a header field
(``family_field``: ``family=NAME`` in a FASTA header, ``#=GF ID``/``AC`` in Stockholm, a dataset
column), else from the file name (``families/kunitz.fasta`` -> ``kunitz``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from Bio import Align, SeqIO
from Bio.Seq import Seq
from Bio.SeqIO.FastaIO import SimpleFastaParser
from Bio.SeqRecord import SeqRecord

from diffcore.io import hub_name, missing_source
from diffprotein.alphabet import normalize_residue

__all__ = [
    "FORMATS",
    "ProteinRecord",
    "ProteinSet",
    "ReadOptions",
    "balance_families",
    "format_header",
    "parse_header",
    "read_dataset",
    "read_fasta_records",
    "read_sequences",
    "split_holdout",
    "write_fasta",
]

FORMATS = {
    ".fasta": "fasta",
    ".fa": "fasta",
    ".faa": "fasta",
    ".fas": "fasta",
    ".a2m": "a2m",
    ".a3m": "a3m",
    ".sto": "stockholm",
    ".stk": "stockholm",
    ".sth": "stockholm",
    ".stockholm": "stockholm",
}
_STOCKHOLM_FIELDS = {"ID": "identifier", "AC": "accession", "DE": "definition"}


@dataclass(frozen=True)
class ProteinRecord:
    """One sequence: ``id`` from its source, ``sequence`` normalized (20 letters and X),
    ``family`` label or None, ``description`` the rest of the header."""

    id: str
    sequence: str
    family: str | None = None
    description: str = ""


@dataclass(frozen=True)
class ReadOptions:
    """How records are read and checked."""

    family: str | None = None  # label for every record; None: header field, else file stem
    family_field: str | None = None  # FASTA "KEY" of KEY=VALUE; Stockholm "ID"/"AC"/"DE"
    inserts: Literal["keep", "drop"] = "keep"  # lowercase insert states of aligned formats
    max_length: int | None = None  # longer records are errors (or skipped); None: no limit
    on_error: Literal["raise", "skip"] = "raise"  # skip: count bad records instead of raising

    def __post_init__(self) -> None:
        if self.inserts not in ("keep", "drop"):
            raise ValueError(f"inserts must be 'keep' or 'drop', got {self.inserts!r}")
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"max_length must be >= 1 or None, got {self.max_length}")


@dataclass
class ProteinSet:
    """Records read from one or more sources, and how many were skipped, by reason."""

    records: list[ProteinRecord] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def families(self) -> tuple[str, ...]:
        """The sorted family labels present (records without one are not counted)."""
        return tuple(sorted({r.family for r in self.records if r.family is not None}))

    def extend(self, other: ProteinSet) -> None:
        self.records.extend(other.records)
        self.skipped.update(other.skipped)


class _Checker:
    """Normalizes raw sequences and applies ``on_error`` (raise, or skip and count)."""

    def __init__(self, source: str, options: ReadOptions, aligned: bool) -> None:
        self.source, self.options, self.aligned = source, options, aligned
        self.out = ProteinSet()

    def add(self, rid: str, raw: str, family: str | None, description: str = "") -> None:
        try:
            if not rid:
                raise _Bad("no_id", "a record has no id (an empty header line; expected >ID ...)")
            seq = self._normalize(rid, raw)
        except _Bad as bad:
            if self.options.on_error == "raise":
                raise ValueError(f"{self.source}: {bad.message}") from None
            self.out.skipped[bad.reason] += 1
            return
        self.out.records.append(ProteinRecord(rid, seq, family, description))

    def _normalize(self, rid: str, raw: str) -> str:
        raw = "".join(raw.split()).replace("-", "").replace(".", "")
        if raw.endswith("*"):
            raw = raw[:-1]
        if self.aligned and self.options.inserts == "drop":
            raw = "".join(c for c in raw if not (c.isascii() and c.islower()))
        letters = []
        for i, c in enumerate(raw):
            # only ASCII is uppercased: str.upper() turns 'ı' into 'I' and 'ß' into 'SS'
            r = normalize_residue(c.upper() if c.isascii() else c)
            if r is None:
                raise _Bad(
                    "invalid",
                    f"record {rid!r} has {c!r} at residue {i + 1}, which is not an amino-acid "
                    "code (expected the 20 standard letters, X, or B/Z/J/U/O)",
                )
            letters.append(r)
        if not letters:
            raise _Bad("empty", f"record {rid!r} is empty (no residues after removing gaps)")
        limit = self.options.max_length
        if limit is not None and len(letters) > limit:
            raise _Bad(
                "too_long",
                f"record {rid!r} has {len(letters)} residues, more than max_length {limit}",
            )
        return "".join(letters)


class _Bad(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def _read_text(path: Path) -> str:
    """The file's text (gunzipped for .gz), or a ValueError naming it: not UTF-8, a damaged
    or truncated gzip stream."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                return handle.read()
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: a damaged gzip file ({err})") from None


def _format_of(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise ValueError(
            f"{path}: unknown sequence file type; expected a name ending in one of "
            f"{', '.join(sorted(FORMATS))} (optionally .gz)"
        )
    return fmt


def _stem(path: Path) -> str:
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    return name.rsplit(".", 1)[0]


def parse_header(description: str) -> dict[str, str]:
    """``KEY=VALUE`` fields of a FASTA header line (without the leading ``>``)."""
    fields = {}
    for word in description.split()[1:]:
        key, sep, value = word.partition("=")
        if sep and key:
            fields[key] = value
    return fields


def format_header(rid: str, fields: dict[str, Any]) -> str:
    """``ID KEY=VALUE ...``: the header ``write_fasta`` writes and ``parse_header`` reads."""
    if not rid or any(c.isspace() for c in rid):
        raise ValueError(f"a FASTA id must be non-empty without whitespace, got {rid!r}")
    words = [rid]
    for key, value in fields.items():
        text = str(value)
        if not text or any(c.isspace() for c in text) or "=" in key:
            raise ValueError(f"header field {key}={text!r} must be non-empty without spaces")
        words.append(f"{key}={text}")
    return " ".join(words)


def read_fasta_records(path: str | Path, options: ReadOptions = ReadOptions()) -> ProteinSet:
    """FASTA, A2M or A3M (FASTA-formatted alignments) through ``Bio.SeqIO``."""
    path = Path(path)
    fmt = _format_of(path)
    check = _Checker(str(path), options, aligned=fmt != "fasta")
    default_family = options.family or (None if options.family_field else _stem(path))
    text = _read_text(path)
    if text.strip() and not text.lstrip().startswith(">"):
        raise ValueError(f"{path}: not a FASTA file (the first record must start with '>')")
    count = 0
    # the plain-string parser: Bio.Seq holds ASCII bytes and fails on any other letter
    for description, seq in SimpleFastaParser(io.StringIO(text)):
        count += 1
        rid = description.split(None, 1)[0] if description else ""
        family = default_family
        if options.family is None and options.family_field:
            family = parse_header(description).get(options.family_field)
            if family is None:
                raise ValueError(
                    f"{path}: record {rid!r} has no {options.family_field}=NAME field in its "
                    f"header {description!r}"
                )
        check.add(rid, seq, family, description)
    if count == 0:
        raise ValueError(f"{path}: no FASTA records found")
    return check.out


def _read_stockholm(path: Path, options: ReadOptions) -> ProteinSet:
    """Stockholm alignments (one or many per file) through ``Bio.Align``."""
    key = None
    if options.family is None and options.family_field:
        key = _STOCKHOLM_FIELDS.get(options.family_field.upper())
        if key is None:
            raise ValueError(
                f"family_field for Stockholm files must be one of {sorted(_STOCKHOLM_FIELDS)} "
                f"(a #=GF line), got {options.family_field!r}"
            )
    check = _Checker(str(path), options, aligned=True)
    text = _read_text(path)
    try:
        alignments = list(Align.parse(io.StringIO(text), "stockholm"))
    except (ValueError, AssertionError, AttributeError, NameError) as err:  # Biopython's
        raise ValueError(f"{path}: not a valid Stockholm file: {err}") from err
    if not alignments:
        raise ValueError(f"{path}: no Stockholm alignment found")
    for number, alignment in enumerate(alignments, 1):
        family = options.family or _stem(path)
        if key is not None:
            family = alignment.annotations.get(key)
            if family is None:
                raise ValueError(
                    f"{path}: alignment {number} has no '#=GF {options.family_field}' line"
                )
        for rec in alignment.sequences:
            check.add(rec.id, str(rec.seq), family, rec.description)
    return check.out


def _files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(
                f for f in p.iterdir() if f.is_file() and not f.name.startswith(".") and _known(f)
            )
            if not found:
                raise ValueError(
                    f"{p}: no sequence files in this folder (expected names ending in "
                    f"{', '.join(sorted(FORMATS))})"
                )
            yield from found
        elif p.is_file():
            yield p
        else:
            raise FileNotFoundError(f"{p} does not exist")


def _known(path: Path) -> bool:
    try:
        _format_of(path)
    except ValueError:
        return False
    return True


def read_sequences(
    paths: str | Path | Iterable[str | Path], options: ReadOptions = ReadOptions()
) -> ProteinSet:
    """Read files and folders of sequence files (every known file in a folder, sorted).

    The format follows the file name: .fasta/.fa/.faa/.fas, .a2m, .a3m, .sto/.stk/.sth/
    .stockholm, each optionally gzipped (.gz)."""
    if isinstance(paths, str | Path):
        paths = [paths]
    out = ProteinSet()
    for path in _files(paths):
        if _format_of(path) == "stockholm":
            out.extend(_read_stockholm(path, options))
        else:
            out.extend(read_fasta_records(path, options))
    return out


def read_dataset(
    source: Any,
    *,
    split: str = "train",
    sequence_column: str = "sequence",
    family_column: str | None = None,
    id_column: str | None = None,
    options: ReadOptions = ReadOptions(),
) -> ProteinSet:
    """Records from a Hugging Face dataset with a sequence column.

    source: a ``datasets.Dataset``; a folder written by ``Dataset.save_to_disk``; a local
    .csv/.tsv/.json/.jsonl/.parquet file; or ``hub:NAME``, a Hugging Face Hub data set (the
    only source that reaches the network: any other missing path is an error). Record ids
    come from ``id_column`` (else ``row<N>``), families from ``family_column`` (else
    ``options.family``)."""
    import datasets

    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False  # a local file: no "download count" request

    name = str(source)
    if isinstance(source, datasets.Dataset):
        table, name = source, "dataset"
    else:
        table = _load_table(datasets, Path(str(source)), str(source), split)
    for column in (sequence_column, family_column, id_column):
        if column is not None and column not in table.column_names:
            raise ValueError(f"{name}: no column {column!r}; the columns are {table.column_names}")
    check = _Checker(name, options, aligned=False)
    for i, row in enumerate(table):
        for column in (id_column, family_column):
            if column is not None and row[column] is None:  # str(None) is no id or family
                raise ValueError(f"{name}: row {i} has no value in column {column!r}")
        rid = str(row[id_column]) if id_column else f"row{i}"
        seq = row[sequence_column]
        if not isinstance(seq, str):
            raise ValueError(f"{name}: row {i} ({rid!r}) has a {type(seq).__name__} sequence")
        family = str(row[family_column]) if family_column else options.family
        check.add(rid, seq, family)
    return check.out


def _load_table(datasets: Any, path: Path, name: str, split: str) -> Any:
    builders = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}
    builders[".parquet"] = "parquet"
    if path.is_dir() and (path / "dataset_info.json").is_file():
        return datasets.load_from_disk(str(path))
    if path.is_file():
        builder = builders.get(path.suffix.lower())
        if builder is None:
            raise ValueError(f"{path}: expected a {', '.join(sorted(builders))} file")
        extra = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
        try:
            return datasets.load_dataset(builder, data_files=str(path), split="train", **extra)
        except (datasets.exceptions.DatasetGenerationError, ValueError) as err:
            # the builder's own error says only "An error occurred"; its cause says what
            cause = err.__cause__ or err
            raise ValueError(f"{path}: not a readable {builder} table ({cause})") from err
    if path.is_dir():  # a folder of data files in the Hub's layout
        return datasets.load_dataset(str(path), split=split)
    if (problem := missing_source(name)) is not None:
        raise FileNotFoundError(problem)
    return datasets.load_dataset(hub_name(name), split=split)


def _hash_key(sequence: str) -> int:
    return int(hashlib.md5(sequence.encode()).hexdigest(), 16)


def split_holdout(
    records: Iterable[ProteinRecord], fraction: float = 0.1
) -> tuple[list[ProteinRecord], list[ProteinRecord]]:
    """(train, held out): ``round(fraction * n)`` records of each family of n (records without
    a family form one group) go to the held-out side, chosen by the MD5 of the sequence, so the
    split depends only on the data. Order within each side follows the input."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must lie in [0, 1), got {fraction}")
    records = list(records)
    groups: dict[str | None, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(r.family, []).append(i)
    held: set[int] = set()
    for members in groups.values():
        ranked = sorted(members, key=lambda i: (_hash_key(records[i].sequence), i))
        held.update(ranked[: round(fraction * len(members))])
    train = [r for i, r in enumerate(records) if i not in held]
    return train, [r for i, r in enumerate(records) if i in held]


def balance_families(records: Iterable[ProteinRecord], alpha: float) -> list[ProteinRecord]:
    """Records with small families repeated so that a family of n records weighs about
    ``n ** alpha`` in training instead of n: each record of a family of n appears
    ``round((n_max / n) ** (1 - alpha))`` times (at least once), n_max being the largest
    family. alpha 1 changes nothing; 0 gives every family about the same weight. Records
    without a family form one group. Whole repeats keep every epoch a plain shuffle of a fixed
    list, so resuming stays exact and each sequence of a family is seen equally often."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"family balance alpha must lie in [0, 1], got {alpha}")
    records = list(records)
    sizes = Counter(r.family for r in records)
    if not sizes:
        return []
    largest = max(sizes.values())
    repeats = {f: max(1, round((largest / n) ** (1.0 - alpha))) for f, n in sizes.items()}
    return [r for r in records for _ in range(repeats[r.family])]


def write_fasta(
    records: Iterable[tuple[str, str, dict[str, Any]]], path: str | Path, *, width: int = 60
) -> Path:
    """Write (id, sequence, header fields) triples as FASTA through ``Bio.SeqIO``.

    Headers are ``>ID KEY=VALUE ...`` (``format_header``); lines wrap at ``width`` letters.
    The file is written beside ``path`` and renamed, so it is never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seq_records = [
        SeqRecord(Seq(seq), id=rid, description=format_header(rid, fields))
        for rid, seq, fields in records
    ]
    tmp = path.with_name(f".tmp-{path.name}")
    with tmp.open("w", encoding="utf-8") as handle:
        writer = SeqIO.FastaIO.FastaWriter(handle, wrap=width)
        writer.write_file(seq_records)
    tmp.replace(path)
    return path


def read_samples(path: str | Path) -> tuple[list[ProteinRecord], list[Any]]:
    """Sequences written by ``ProteinPipeline.save`` with how they were made: the records
    (family from the ``family=`` header field; "none" is no family) and each one's motif
    (a ``diffprotein.conditioning.Motif`` from the ``motif=`` field, or None)."""
    import dataclasses

    from diffprotein.conditioning import Motif

    records = read_sequences(path, ReadOptions(family_field="family")).records
    records = [
        dataclasses.replace(r, family=None if r.family == "none" else r.family) for r in records
    ]
    motifs = [parse_header(r.description).get("motif") for r in records]
    return records, [Motif.parse(m) if m else None for m in motifs]
