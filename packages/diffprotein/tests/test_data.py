"""Reading and writing sequences: every format, every documented error, the residue policy."""

import gzip

import pytest
from Bio import SeqIO

from diffprotein.data import (
    ProteinRecord,
    ReadOptions,
    balance_families,
    parse_header,
    read_dataset,
    read_sequences,
    split_holdout,
    write_fasta,
)


def write(path, text):
    path.write_text(text)
    return path


def test_fasta_records_are_normalized_and_labelled_by_file_name(tmp_path):
    f = write(tmp_path / "kunitz.fasta", ">a desc\nACDEF\nghik*\n>b\nAC-DE.F\n")
    data = read_sequences(f)
    assert [(r.id, r.sequence, r.family) for r in data.records] == [
        ("a", "ACDEFGHIK", "kunitz"),  # lowercase uppercased, the stop removed
        ("b", "ACDEF", "kunitz"),  # gaps removed
    ]
    assert data.families == ("kunitz",)


def test_residue_policy_maps_ambiguous_and_rare_letters():
    # B, Z, J -> X (ambiguity codes); U -> C (selenocysteine); O -> K (pyrrolysine)
    from diffprotein.alphabet import normalize_residue

    assert [normalize_residue(c) for c in "BZJUOXA"] == ["X", "X", "X", "C", "K", "X", "A"]
    assert normalize_residue("1") is None


def test_a2m_inserts_are_kept_or_dropped(tmp_path):
    f = write(tmp_path / "fam.a2m", ">s1\nAC..DEfgH-IK\n>s2\nACxyDE..H-IK\n")
    keep = read_sequences(f).records
    assert [r.sequence for r in keep] == ["ACDEFGHIK", "ACXYDEHIK"]
    drop = read_sequences(f, ReadOptions(inserts="drop")).records
    assert [r.sequence for r in drop] == ["ACDEHIK", "ACDEHIK"]


def test_a3m_reads_like_a2m(tmp_path):
    f = write(tmp_path / "q.a3m", ">query\nMKV-LA\n>hit\nMKvwV-LA\n")
    assert [r.sequence for r in read_sequences(f).records] == ["MKVLA", "MKVWVLA"]
    assert [r.sequence for r in read_sequences(f, ReadOptions(inserts="drop")).records] == [
        "MKVLA",
        "MKVLA",
    ]


STOCKHOLM = """# STOCKHOLM 1.0
#=GF ID   Kunitz_BPTI
#=GF AC   PF00014
seq1/1-10      AC.DEfg-HIK
seq2/3-12      ACcDE..-HIK
//
"""


def test_stockholm_family_from_the_file_name_or_its_gf_line(tmp_path):
    f = write(tmp_path / "pf00014.sto", STOCKHOLM)
    by_name = read_sequences(f).records
    assert [(r.id, r.sequence, r.family) for r in by_name] == [
        ("seq1/1-10", "ACDEFGHIK", "pf00014"),
        ("seq2/3-12", "ACCDEHIK", "pf00014"),
    ]
    assert {r.family for r in read_sequences(f, ReadOptions(family_field="ID")).records} == {
        "Kunitz_BPTI"
    }
    assert [r.sequence for r in read_sequences(f, ReadOptions(inserts="drop")).records] == [
        "ACDEHIK",
        "ACDEHIK",
    ]


def test_family_from_a_header_field_and_a_clear_error_when_missing(tmp_path):
    f = write(tmp_path / "mixed.fa", ">a family=sh3 x=1\nACD\n>b family=pdz\nEFG\n")
    records = read_sequences(f, ReadOptions(family_field="family")).records
    assert [r.family for r in records] == ["sh3", "pdz"]
    g = write(tmp_path / "bad.fa", ">a family=sh3\nACD\n>b\nEFG\n")
    with pytest.raises(ValueError, match=r"bad\.fa: record 'b' has no family=NAME"):
        read_sequences(g, ReadOptions(family_field="family"))


def test_gzipped_files_and_folders(tmp_path):
    with gzip.open(tmp_path / "sh3.fasta.gz", "wt") as h:
        h.write(">z\nWWW\n")
    write(tmp_path / "pdz.fa", ">y\nAAA\n")
    write(tmp_path / "notes.txt", "not a sequence file")
    data = read_sequences(tmp_path)
    assert sorted((r.id, r.family) for r in data.records) == [("y", "pdz"), ("z", "sh3")]


@pytest.mark.parametrize(
    ("text", "reason", "message"),
    [
        (">ok\nACD\n>bad1\nAC1D\n", "invalid", r"x\.fasta: record 'bad1' has '1' at residue 3"),
        (">ok\nACD\n>hollow\n--..\n", "empty", r"x\.fasta: record 'hollow' is empty"),
        (">ok\nACD\n>long\nACDEFGHIKL\n", "too_long", r"x\.fasta: record 'long' has 10 residues"),
    ],
)
def test_bad_records_raise_naming_file_and_record_or_are_skipped_and_counted(
    tmp_path, text, reason, message
):
    f = write(tmp_path / "x.fasta", text)
    with pytest.raises(ValueError, match=message):
        read_sequences(f, ReadOptions(max_length=8))
    data = read_sequences(f, ReadOptions(max_length=8, on_error="skip"))
    assert [r.id for r in data.records] == ["ok"]
    assert data.skipped == {reason: 1}


def test_files_that_are_not_sequences_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not a FASTA file"):
        read_sequences(write(tmp_path / "a.fasta", "ACDEF\n"))
    with pytest.raises(ValueError, match="unknown sequence file type"):
        read_sequences(write(tmp_path / "a.txt", ">a\nACD\n"))
    with pytest.raises(ValueError, match="no Stockholm alignment"):
        read_sequences(write(tmp_path / "a.sto", ""))
    with pytest.raises(FileNotFoundError):
        read_sequences(tmp_path / "missing.fasta")


def test_hugging_face_datasets_with_a_sequence_column(tmp_path):
    import datasets

    csv = write(tmp_path / "seqs.csv", "name,seq,fam\np1,ACDU,a\np2,WYB,b\n")
    data = read_dataset(csv, sequence_column="seq", family_column="fam", id_column="name")
    assert [(r.id, r.sequence, r.family) for r in data.records] == [
        ("p1", "ACDC", "a"),
        ("p2", "WYX", "b"),
    ]
    table = datasets.Dataset.from_dict({"sequence": ["MKV", "M2V"]})
    with pytest.raises(ValueError, match=r"record 'row1' has '2'"):
        read_dataset(table)
    assert read_dataset(table, options=ReadOptions(on_error="skip")).skipped == {"invalid": 1}
    with pytest.raises(ValueError, match="no column 'seq'"):
        read_dataset(table, sequence_column="seq")
    table.save_to_disk(str(tmp_path / "saved"))
    assert len(read_dataset(tmp_path / "saved", options=ReadOptions(on_error="skip"))) == 1


def test_balancing_repeats_small_families_toward_equal_weight():
    records = [ProteinRecord(f"b{i}", "ACD", "big") for i in range(400)]
    records += [ProteinRecord(f"s{i}", "EFG", "small") for i in range(25)]
    records += [ProteinRecord("n0", "HIK", None)]

    def weights(alpha):
        out = balance_families(records, alpha)
        return {f: sum(r.family == f for r in out) for f in ("big", "small", None)}

    assert balance_families(records, 1.0) == records
    assert weights(0.5) == {"big": 400, "small": 25 * 4, None: 20}  # (400 / 25) ** 0.5 = 4
    assert weights(0.0) == {"big": 400, "small": 400, None: 400}
    again = balance_families(records, 0.5)
    assert [r.id for r in again if r.family == "small"][:8] == ["s0"] * 4 + ["s1"] * 4
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\], got 1.5"):
        balance_families(records, 1.5)


def test_holdout_takes_the_share_of_every_family_and_depends_only_on_the_data():
    def seq(family, i):  # distinct sequences: the digits of i spelled as residues
        return family.upper() + "".join("ACDEFGHIKL"[int(d)] for d in str(i))

    records = [ProteinRecord(f"{f}{i}", seq(f, i), f) for f in ("a", "w") for i in range(40)]
    train, held = split_holdout(records, 0.1)
    assert len(held) == 8 and {r.family for r in held} == {"a", "w"}
    assert sum(r.family == "a" for r in held) == 4
    again_train, again_held = split_holdout(list(reversed(records)), 0.1)
    assert {r.id for r in again_held} == {r.id for r in held}
    assert len(train) + len(held) == len(records)


def test_fasta_written_is_read_back_identically_by_biopython(tmp_path):
    rows = [
        (
            "sample_00000",
            "ACDEFGHIKLMNPQRSTVWY" * 5,
            {"family": "kunitz", "length": 100, "seed": 7},
        ),
        ("sample_00001", "MKV", {"family": "none", "motif": "1-2:MK,3:V"}),
    ]
    path = write_fasta(rows, tmp_path / "out" / "s.fasta")
    back = list(SeqIO.parse(path, "fasta"))
    assert [(r.id, str(r.seq)) for r in back] == [(rid, seq) for rid, seq, _ in rows]
    assert [parse_header(r.description) for r in back] == [
        {k: str(v) for k, v in f.items()} for _, _, f in rows
    ]
    assert [r.sequence for r in read_sequences(path).records] == [seq for _, seq, _ in rows]
    with pytest.raises(ValueError, match="without spaces"):
        write_fasta([("a", "AC", {"note": "two words"})], tmp_path / "bad.fasta")


def test_real_family_files_read_cleanly(shared_data):
    data = read_sequences(shared_data / "proteins" / "families" / "kunitz.fasta")
    assert len(data) == 8871 and not data.skipped
    assert data.families == ("kunitz",)
    assert all(41 <= len(r.sequence) <= 53 for r in data.records)


def test_a_mistyped_table_path_fails_at_once_and_only_hub_names_reach_the_hub(
    tmp_path, monkeypatch
):
    import datasets

    asked = []

    def fake_hub(name, split):  # stands in for the network: records what would be asked
        asked.append((name, split))
        return datasets.Dataset.from_dict({"sequence": ["MKV"]})

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    for source in ("data/uniref.csv", "uniref50", str(tmp_path / "absent")):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            read_dataset(source)
    with pytest.raises(FileNotFoundError, match="write hub:uniref50"):
        read_dataset("uniref50")
    assert asked == []
    assert len(read_dataset("hub:owner/proteins", split="test")) == 1
    assert asked == [("owner/proteins", "test")]
