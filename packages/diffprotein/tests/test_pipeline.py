"""Training and sampling: the loss falls on real sequences, motifs are never changed, seeds
repeat, lengths and families are obeyed."""

import dataclasses

import pytest
import torch

from diffcore.io import from_pretrained
from diffcore.training import TrainConfig
from diffprotein.alphabet import encode
from diffprotein.conditioning import Motif
from diffprotein.data import ProteinRecord, read_sequences, split_holdout
from diffprotein.model import ProteinDenoiser, load_preset
from diffprotein.pipeline import (
    SamplingConfig,
    build_denoiser,
    likelihood,
    redesign,
    sample,
    sequence_likelihoods,
    train_denoiser,
)

TOY = [
    ProteinRecord("a1", "MKVLAAGW", "alpha"),
    ProteinRecord("a2", "MKVLSAGWY", "alpha"),
    ProteinRecord("b1", "GSHMCCPQ", "beta"),
    ProteinRecord("b2", "GSHMCCPQRT", "beta"),
]


@pytest.fixture
def untrained():
    torch.manual_seed(0)
    return build_denoiser(TOY, load_preset("tiny")).eval()


def test_a_tiny_model_learns_real_sequences(shared_data, tmp_path):
    records = read_sequences(shared_data / "proteins" / "families" / "kunitz.fasta").records
    train, held = split_holdout(records[:640], 0.1)
    torch.manual_seed(0)
    model = build_denoiser(train, load_preset("tiny"))
    before = likelihood(model, held, samples=8)
    config = TrainConfig(steps=150, batch_size=32, lr=3e-3, ema_decay=None, log_every=15)
    result = train_denoiser(model, train, config, tmp_path / "run", progress=False)
    after = likelihood(model, held, samples=8)
    # nats per residue on held-out sequences: from chance (~ln 21 = 3.04) well below it
    assert before > 2.95 and after < before - 0.15
    first, last = result.log[0].loss, sum(r.loss for r in result.log[-3:]) / 3
    assert last < first - 0.1
    saved = from_pretrained(ProteinDenoiser, result.final_model)
    assert saved.config.families == ("kunitz",)
    assert saved.config.lengths["kunitz"]  # the lengths it saw, for sampling without --length


@pytest.mark.parametrize(
    "config",
    [
        SamplingConfig(),
        SamplingConfig(sampler="masked_ancestral", temperature=1.5),
        SamplingConfig(steps=3, schedule="cosine", temperature=0.0, guidance=3.0),
        SamplingConfig(steps=5, guidance=0.0, batch_size=7),
        SamplingConfig(sampler="confidence", steps=4, confidence_noise=4.5),
    ],
)
def test_scaffolding_never_changes_motif_residues(untrained, config):
    motif = Motif.parse(["2-4:WCW", "9:HH"])
    out = sample(untrained, 20, family="beta", motif=motif, config=config, seed=3, progress=False)
    assert all(motif.preserved_in(s.sequence) for s in out)
    assert all(s.fields["motif"] == "2-4:WCW,9-10:HH" for s in out)
    # lengths drawn from beta's training lengths (8, 10), raised to the motif's end (10)
    assert {len(s.sequence) for s in out} == {10}


def test_sampling_obeys_length_and_family_and_never_writes_x_or_specials(untrained):
    out = sample(untrained, 6, family="alpha", length=[5, 9, 12, 5, 9, 12], progress=False)
    assert [len(s.sequence) for s in out] == [5, 9, 12, 5, 9, 12]
    assert all(set(s.sequence) <= set("ACDEFGHIKLMNPQRSTVWY") for s in out)
    assert out[0].fields["family"] == "alpha" and out[0].fields["length"] == 5
    assert {len(s.sequence) for s in sample(untrained, 30, family="alpha", progress=False)} == {
        8,
        9,
    }
    with pytest.raises(ValueError, match="unknown family 'gamma'"):
        sample(untrained, 1, family="gamma", progress=False)
    with pytest.raises(ValueError, match="beyond the sequence length 4"):
        sample(untrained, 1, length=4, motif=Motif.parse("3-5:AAA"), progress=False)


def test_the_same_seed_gives_the_same_samples(untrained):
    config = SamplingConfig(batch_size=4)
    one = sample(untrained, 10, family="alpha", config=config, seed=11, progress=False)
    two = sample(untrained, 10, family="alpha", config=config, seed=11, progress=False)
    other = sample(untrained, 10, family="alpha", config=config, seed=12, progress=False)
    assert [s.sequence for s in one] == [s.sequence for s in two]
    assert [s.sequence for s in one] != [s.sequence for s in other]
    assert one[0].fields["seed"] == 11


def test_confidence_noise_reorders_reveals_and_is_recorded(untrained):
    plain = SamplingConfig(sampler="confidence", steps=4)
    noisy = SamplingConfig(sampler="confidence", steps=4, confidence_noise=4.5)
    one = sample(untrained, 12, family="alpha", length=12, config=plain, seed=5, progress=False)
    two = sample(untrained, 12, family="alpha", length=12, config=noisy, seed=5, progress=False)
    again = sample(untrained, 12, family="alpha", length=12, config=noisy, seed=5, progress=False)
    assert [s.sequence for s in two] == [s.sequence for s in again]
    assert [s.sequence for s in one] != [s.sequence for s in two]
    assert two[0].fields["confidence_noise"] == 4.5 and "confidence_noise" not in one[0].fields
    with pytest.raises(ValueError, match="draws its order at random"):
        SamplingConfig(sampler="masked_ancestral", confidence_noise=1.0)
    with pytest.raises(ValueError, match="confidence_noise must be >= 0"):
        SamplingConfig(sampler="confidence", confidence_noise=-1.0)


def test_confidence_measure_changes_the_order_and_is_recorded(untrained):
    plain = SamplingConfig(sampler="confidence", steps=4)
    blind = SamplingConfig(sampler="confidence", steps=4, confidence="entropy")
    one = sample(untrained, 12, family="alpha", length=12, config=plain, seed=5, progress=False)
    two = sample(untrained, 12, family="alpha", length=12, config=blind, seed=5, progress=False)
    assert [s.sequence for s in one] != [s.sequence for s in two]
    assert two[0].fields["confidence"] == "entropy" and "confidence" not in one[0].fields
    with pytest.raises(ValueError, match="draws its order at random"):
        SamplingConfig(sampler="masked_ancestral", confidence="margin")
    with pytest.raises(ValueError, match="confidence must be one of"):
        SamplingConfig(sampler="confidence", confidence="surprise")


def test_entropy_bound_sets_the_pace_and_is_recorded(untrained):
    calls = [0]
    untrained.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    steps = {}
    for bound in (0.0, 1e3):  # never / always fits: one residue per call / all in one call
        config = SamplingConfig(sampler="confidence", entropy_bound=bound)
        calls[0] = 0
        out = sample(untrained, 2, family="alpha", length=12, config=config, progress=False)
        steps[bound] = calls[0]
        assert out[0].fields["entropy_bound"] == bound and len(out[0].sequence) == 12
    assert steps == {0.0: 12, 1e3: 1}
    with pytest.raises(ValueError, match="draws its order at random"):
        SamplingConfig(sampler="masked_ancestral", entropy_bound=1.0)
    with pytest.raises(ValueError, match="entropy_bound must be >= 0"):
        SamplingConfig(sampler="confidence", entropy_bound=-1.0)


@pytest.mark.parametrize("sampler", ["masked_ancestral", "confidence"])
def test_top_p_reaches_the_sampler_and_is_recorded(untrained, sampler):
    # the untrained model is nearly uniform: a full draw uses most residues, a nucleus too
    # small for a second residue only each position's most likely one
    narrow = SamplingConfig(sampler=sampler, steps=4, top_p=1e-6)
    full = SamplingConfig(sampler=sampler, steps=4)
    one = sample(untrained, 8, family="alpha", length=12, config=narrow, seed=5, progress=False)
    two = sample(untrained, 8, family="alpha", length=12, config=full, seed=5, progress=False)
    used = [len(set("".join(s.sequence for s in out))) for out in (one, two)]
    assert used[0] <= 4 and used[1] >= 12, used
    assert one[0].fields["top_p"] == 1e-6 and "top_p" not in two[0].fields
    with pytest.raises(ValueError, match="top_p must lie in"):
        SamplingConfig(top_p=1.5)


def test_best_of_keeps_the_candidate_the_model_finds_most_likely(untrained):
    # a model that favours alanine (p ~ 0.5 against ~0.025 for each other residue), so the
    # more A a sequence holds, the likelier it is to the model
    with torch.no_grad():
        untrained.esm.lm_head.bias[encode("A")] += 3.0
    plain = SamplingConfig(batch_size=16)
    best = dataclasses.replace(plain, best_of=8)
    picked = sample(untrained, 10, family="alpha", length=12, config=best, seed=4, progress=False)
    # the candidates are the draws best_of=1 makes with the same seed and batches
    drawn = sample(untrained, 80, family="alpha", length=12, config=plain, seed=4, progress=False)
    groups = [[c.sequence.count("A") for c in drawn[8 * i : 8 * i + 8]] for i in range(10)]
    for s, group, i in zip(picked, groups, range(10), strict=True):
        assert s.sequence in [c.sequence for c in drawn[8 * i : 8 * i + 8]]
        # the ranking's bound is a 4-draw estimate, so a near tie may go either way
        assert s.sequence.count("A") >= sorted(group)[4], (s.sequence, group)
    mean_picked = sum(s.sequence.count("A") for s in picked) / 10
    assert mean_picked > sum(map(sum, groups)) / 80 + 1.5
    assert picked[0].fields["best_of"] == 8 and "best_of" not in drawn[0].fields
    with pytest.raises(ValueError, match="best_of must be >= 1"):
        SamplingConfig(best_of=0)
    with pytest.raises(ValueError, match="not redesign"):
        redesign(untrained, TOY, fraction=0.5, config=best, progress=False)


def test_sequence_likelihoods_score_each_record_and_average_to_likelihood(untrained):
    with torch.no_grad():
        untrained.esm.lm_head.bias[encode("A")] += 3.0  # alanine-rich is likelier
    records = [ProteinRecord("rich", "AAAAKAAAAA", "alpha"), ProteinRecord("poor", "MKVWSTGHYC")]
    records += TOY
    nll = sequence_likelihoods(untrained, records, samples=8)
    assert len(nll) == len(records) and nll[0] < nll[1] - 1.0
    sizes = [len(r.sequence) for r in records]
    mean = sum(v * n for v, n in zip(nll, sizes, strict=True)) / sum(sizes)
    assert likelihood(untrained, records, samples=8) == pytest.approx(mean)
    with pytest.raises(ValueError, match="no sequences"):
        likelihood(untrained, [])


def test_redesign_changes_only_the_chosen_regions(untrained):
    out = redesign(untrained, TOY, regions="2-3,6", seed=1, progress=False)
    for new, old in zip(out, TOY, strict=True):
        keep = [i for i in range(len(old.sequence)) if i not in (1, 2, 5)]
        assert [new.sequence[i] for i in keep] == [old.sequence[i] for i in keep]
        assert new.fields["source"] == old.id and new.fields["family"] == old.family
    changed = redesign(untrained, TOY * 5, fraction=0.5, seed=2, progress=False)
    assert any(n.sequence != o.sequence for n, o in zip(changed, TOY * 5, strict=True))
    with pytest.raises(ValueError, match="outside 1..8"):
        redesign(untrained, TOY[:1], regions="7-9", progress=False)
