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
    reference = [
        ProteinRecord(f"r{i}", s, f)
        for i, (s, f) in enumerate(
            [("MKVLAAGW", "a"), ("MKVLSAGW", "a"), ("GSHMCCPQ", "b"), ("GSHMCCPW", "b")]
        )
    ]
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


def _letter_perplexity(judge, records):
    """A stand-in judge: 1 nat per A, 2 per other residue, 0 for <eos>."""
    nats = sum(sum(1.0 if c == "A" else 2.0 for c in r.sequence) for r in records)
    return math.exp(nats / sum(len(r.sequence) + 1 for r in records))


def test_all_row_compares_each_family_with_itself_whatever_the_mix(monkeypatch):
    """Samples ask for families in another mix than the data's: the "all" row must not score
    the mix. Samples identical to each family's natural sequences score ratio 1 and JSD 0,
    where pooling them against the pooled natural sequences would give 0.59 and > 0."""
    monkeypatch.setattr("diffprotein.evaluate.perplexity", _letter_perplexity)
    rec = lambda s, f, n: [ProteinRecord(f"{f}{i}", s, f) for i in range(n)]  # noqa: E731
    reference = rec("AAAA", "a", 1) + rec("WWWW", "b", 5)
    heldout = rec("AAAA", "a", 1) + rec("WWWW", "b", 9)
    same = rec("AAAA", "a", 3) + rec("WWWW", "b", 1)
    by = {r.family: r for r in evaluate_samples(same, reference, heldout=heldout, judge=object())}
    assert by["all"].perplexity_ratio == pytest.approx(1.0)
    assert by["all"].composition_jsd == 0.0
    pooled = _letter_perplexity(None, same) / _letter_perplexity(None, heldout)
    assert pooled == pytest.approx(math.exp(-0.52))  # what the pooled comparison would say
    assert composition_divergence(["AAAA"] * 3 + ["WWWW"], ["AAAA"] + ["WWWW"] * 5) > 0.1
    # a's samples 0.2 nats/token worse on 15 of the 20 tokens: the ratio is the token-weighted
    # geometric mean of the families' ratios, and the judge's perplexity the pooled one
    worse = rec("AAAW", "a", 3) + rec("WWWW", "b", 1)
    by = {r.family: r for r in evaluate_samples(worse, reference, heldout=heldout, judge=object())}
    assert by["a"].perplexity_ratio == pytest.approx(math.exp(0.2))
    assert by["all"].perplexity_ratio == pytest.approx(math.exp(15 / 20 * 0.2))
    assert by["all"].judge_perplexity == pytest.approx(_letter_perplexity(None, worse))
    jsd_a = composition_divergence(["AAAW"] * 3, ["AAAA"])
    assert by["all"].composition_jsd == pytest.approx(3 / 4 * jsd_a)


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


def test_budget_step_times_cover_the_denoiser_the_peer_and_the_judge():
    from diffprotein.model import model_for_training, training_shape
    from diffprotein.training import seconds_per_step

    records = [ProteinRecord(f"k{i}", "RPDFCLEPPYTGPCKARIIRYFYNAK"[i:], "kunitz") for i in range(8)]
    records += [ProteinRecord(f"s{i}", "ALYDYEARTEDDLSFHKGEKFQ"[i:], "sh3") for i in range(8)]
    shape = training_shape("tiny", max_length=32)
    config = TrainConfig(steps=1, batch_size=4, precision="fp32")
    for objective in ("diffusion", "autoregressive", "classifier"):
        model = model_for_training(objective, records, shape, families=("kunitz", "sh3"))
        before = {k: v.clone() for k, v in model.state_dict().items()}
        assert 0 < seconds_per_step(model, records, config) < 30, objective
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), objective
