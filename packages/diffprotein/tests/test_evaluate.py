"""Metrics against hand-computed answers, and the two judges."""

import math

import pytest
import torch

from diffcore.training import TrainConfig
from diffprotein.alphabet import PAD_ID
from diffprotein.conditioning import Motif
from diffprotein.data import ProteinRecord, read_sequences
from diffprotein.evaluate import (
    IdentityIndex,
    composition,
    composition_divergence,
    evaluate_samples,
    format_scores,
    identity,
    jensen_shannon,
    mean_pairwise_identity,
    motif_preservation,
)
from diffprotein.judges import (
    OTHER,
    FamilyClassifier,
    FamilyClassifierConfig,
    ProteinLM,
    ProteinLMConfig,
    classify,
    family_labels,
    perplexity,
    train_classifier,
    train_lm,
)
from diffprotein.model import load_preset


def test_composition_and_jensen_shannon_divergence():
    p = composition(["AAC", "CX"])  # X is not counted
    assert p[0] == pytest.approx(0.5) and p[1] == pytest.approx(0.5) and p.sum() == 1
    assert jensen_shannon(p, p) == 0.0
    assert jensen_shannon(composition(["AAAA"]), composition(["WWWW"])) == pytest.approx(1.0)
    # JSD of (1/2, 1/2) and (1, 0) in bits: H(3/4, 1/4) - (H(1/2, 1/2) + 0) / 2
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert composition_divergence(["AW"], ["AA"]) == pytest.approx(h - 0.5)


def test_identity_counts_aligned_matches_over_the_shorter_sequence():
    assert identity("ACDEFGHIK", "ACDEFGHIK") == 1.0
    assert identity("DEFGH", "ACDEFGHIKL") == 1.0  # a fragment: end gaps are free
    assert identity("ACDEFGHIKL", "ACDEWGHIKL") == pytest.approx(0.9)
    assert identity("AAAAAAAA", "WWWWWWWW") == 0.0


def test_nearest_identity_finds_memorised_sequences_and_matches_brute_force(shared_data):
    refs = [r.sequence for r in read_sequences(shared_data / "proteins/families/sh3.fasta").records]
    refs = refs[:400]
    index = IdentityIndex.build(refs)
    mutated = refs[7][:10] + "W" + refs[7][11:]
    queries = [refs[3], refs[100][5:30], mutated, "MKVLAAGWYPQRST"]
    found = index.nearest(queries, top_k=16)
    assert found[0] == 1.0 and found[1] == 1.0  # a copy and a fragment
    brute = [max(identity(q, r) for r in refs) for q in queries]
    assert found == pytest.approx(brute)
    # a sampler may stop at once: empty and sub-3-mer samples share nothing, and never crash
    assert index.nearest(["", "MK"], top_k=4) == [
        0.0,
        pytest.approx(max(identity("MK", r) for r in refs[:4])),
    ]
    assert identity("", "ACDE") == 0.0


def test_diversity_and_motif_preservation():
    assert mean_pairwise_identity(["ACDE", "ACDE", "ACDE"]) == 1.0
    assert mean_pairwise_identity(["AAAA", "WWWW"]) == 0.0
    motif = Motif.parse("2:CD")
    assert motif_preservation([("ACDE", motif), ("AWDE", motif)]) == 0.5


def test_evaluate_samples_reports_each_family_and_all():
    reference = [ProteinRecord(f"r{i}", s, f) for i, (s, f) in enumerate(
        [("MKVLAAGW", "a"), ("MKVLSAGW", "a"), ("GSHMCCPQ", "b"), ("GSHMCCPW", "b")]
    )]  # fmt: skip
    samples = [
        ProteinRecord("s1", "MKVLAAGW", "a"),  # a copy of a reference
        ProteinRecord("s2", "MKVLAAGY", "a"),
        ProteinRecord("s3", "GSHMWCPQ", "b"),
    ]
    motifs = [Motif.parse("1:MK"), None, Motif.parse("5:CC")]
    rows = evaluate_samples(samples, reference, motifs=motifs)
    by = {r.family: r for r in rows}
    assert set(by) == {"a", "b", "all"} and by["all"].n == 3
    assert by["a"].novelty_median_identity == pytest.approx((1.0 + 7 / 8) / 2)
    assert by["a"].motif_preserved == 1.0 and by["b"].motif_preserved == 0.0
    assert by["all"].motif_preserved == 0.5
    assert math.isnan(by["a"].judge_accuracy)
    assert "| a | 2 |" in format_scores(rows)


def test_autoregressive_judge_is_causal_and_learns_real_sequences(shared_data, tmp_path):
    records = read_sequences(shared_data / "proteins/families/kunitz.fasta").records[:400]
    torch.manual_seed(0)
    lm = ProteinLM(ProteinLMConfig(**load_preset("tiny"), families=("kunitz",)))
    x = torch.tensor([[5, 6, 7, 8], [5, 6, 7, PAD_ID]])  # with and without padding
    y = x.clone()
    y[:, 2] = 9
    a, b = lm(x), lm(y)
    # logits i predict residue i + 1 from residues before it: the change at 3 is unseen before
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])
    before = perplexity(lm, records[:64])
    config = TrainConfig(steps=60, batch_size=32, lr=3e-3, ema_decay=None)
    train_lm(lm, records[64:], config, tmp_path / "lm", progress=False)
    assert perplexity(lm, records[:64]) < 0.75 * before


@pytest.mark.slow
def test_family_judge_separates_real_families_from_shuffled_ones(shared_data, tmp_path):
    folder = shared_data / "proteins/families"
    data = read_sequences([folder / "kunitz.fasta", folder / "sh3.fasta"]).records
    train = data[:300] + data[-300:]
    test = data[300:340] + data[-340:-300]
    labels = family_labels(("kunitz", "sh3"))
    assert labels == ("kunitz", "sh3", OTHER)
    torch.manual_seed(0)
    clf = FamilyClassifier(FamilyClassifierConfig(**load_preset("tiny"), labels=labels))
    config = TrainConfig(steps=600, batch_size=32, lr=3e-3, ema_decay=None)
    train_classifier(clf, train, config, tmp_path / "clf", progress=False)
    predicted = classify(clf, [r.sequence for r in test])
    assert sum(p == r.family for p, r in zip(predicted, test, strict=True)) / len(test) >= 0.85
    g = torch.Generator().manual_seed(0)
    shuffled = [
        "".join(r.sequence[i] for i in torch.randperm(len(r.sequence), generator=g)) for r in test
    ]
    # right composition, no order: most shuffled sequences are credited to no family
    assert classify(clf, shuffled).count(OTHER) / len(shuffled) >= 0.6
