"""Experts per masked share in the token domains: `diffuse train text|protein --noise-range`
trains each, `diffuse sample text|protein --model A --experts B` composes them."""

import json

import pytest
from Bio import SeqIO

from diffuse import demo_data
from diffuse.cli import main

SH3 = "ALYDYEARTEDDLSFHKGEKFQILNSSEGDWWEARSLTTGETGYIPSNYVAPV"


pytestmark = pytest.mark.usefixtures("one_thread")


def test_text_experts_train_on_their_ranges_and_sample_together(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(demo_data.path("text").read_text()[:20_000])
    common = ["--preset", "tiny", "--block-size", "32", "--steps", "3", "--batch-size", "8"]
    common += ["--eval-every", "0"]
    folders = []
    for name, share in (("low", "0,0.4"), ("high", "0.4,1")):
        folders.append(tmp_path / name)
        argv = ["train", "text", str(corpus), "--out", str(folders[-1]), "--noise-range", share]
        assert main([*argv, *common]) == 0
    meta = json.loads((folders[0] / "model" / "difftext.json").read_text())
    assert meta["mask_range"] == [0.0, 0.4]
    out = tmp_path / "texts.jsonl"
    argv = ["sample", "text", "--model", str(folders[1]), "--experts", str(folders[0])]
    assert main([*argv, "--n", "3", "--length", "24", "--steps", "8", "--out", str(out)]) == 0
    texts = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert len(texts) == 3 and all(len(t) >= 24 for t in texts)  # special tokens: [EOS]
    capsys.readouterr()
    lone = ["sample", "text", "--model", str(folders[1]), "--out", str(tmp_path / "x.jsonl")]
    assert main(lone) != 0
    assert "split the times [0, 1]" in capsys.readouterr().err  # a lone expert: one line


def test_protein_experts_train_on_their_ranges_and_sample_together(tmp_path, capsys):
    data = tmp_path / "sh3.fasta"
    data.write_text("".join(f">s{i}\n{SH3[i:] + SH3[:i]}\n" for i in range(40)))
    common = ["--preset", "tiny", "--steps", "3", "--batch-size", "8", "--device", "cpu"]
    folders = []
    for name, share in (("low", "0,0.5"), ("high", "0.5,1")):
        folders.append(tmp_path / name)
        argv = ["train", "protein", str(data), "--out", str(folders[-1]), "--noise-range", share]
        assert main([*argv, *common]) == 0
    config = json.loads((folders[1] / "final" / "config.json").read_text())
    assert config["mask_range"] == [0.5, 1.0]
    fasta = tmp_path / "s.fasta"
    argv = ["sample", "protein", "--model", str(folders[0]), "--experts", str(folders[1])]
    assert main([*argv, "--n", "3", "--length", "20", "--out", str(fasta), "--device", "cpu"]) == 0
    records = list(SeqIO.parse(fasta, "fasta"))
    assert len(records) == 3 and all(len(r.seq) == 20 for r in records)
    capsys.readouterr()
    bad = ["train", "protein", str(data), "--out", str(tmp_path / "bad"), *common]
    assert main([*bad, "--noise-range", "0.5,0.2"]) == 2
    assert "--noise-range" in capsys.readouterr().err
