"""Training and generation: the loss falls on real sequences; ``ProteinPipeline`` never changes
motifs, repeats its seeds at any batch size, obeys lengths and families, passes sampler options
on and records them, infills and edits, and writes FASTA that reads back."""

import pytest
import torch
from Bio import SeqIO

from diffcore.io import from_pretrained
from diffcore.training import TrainConfig
from diffprotein.alphabet import encode
from diffprotein.conditioning import Motif
from diffprotein.data import (
    ProteinRecord,
    ReadOptions,
    parse_header,
    read_sequences,
    split_holdout,
)
from diffprotein.model import ProteinDenoiser, load_preset
from diffprotein.pipeline import ProteinPipeline
from diffprotein.training import (
    build_denoiser,
    likelihood,
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


@pytest.fixture
def pipe(untrained):
    return ProteinPipeline(untrained)


def sequences(records) -> list[str]:
    return [str(r.seq) for r in records]


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
    "settings",
    [
        {},
        {"sampler": "masked_ancestral", "options": {"temperature": 1.5}},
        {"steps": 3, "options": {"grid": "cosine", "temperature": 0.0}, "guidance": 3.0},
        {"steps": 5, "guidance": 0.0, "batch_size": 7},
        {"sampler": "confidence", "steps": 4, "options": {"confidence_noise": 4.5}},
    ],
)
def test_scaffolding_never_changes_motif_residues(pipe, settings):
    motif = Motif.parse(["2-4:WCW", "9:HH"])
    out = pipe.sample(20, family="beta", motif=motif, seed=3, **settings)
    assert all(motif.preserved_in(str(s.seq)) for s in out)
    assert all(s.annotations["motif"] == "2-4:WCW,9-10:HH" for s in out)
    # lengths drawn from beta's training lengths (8, 10), raised to the motif's end (10)
    assert {len(s.seq) for s in out} == {10}


def test_sampling_obeys_length_and_family_and_never_writes_x_or_specials(pipe):
    out = pipe.sample(6, family="alpha", length=[5, 9, 12, 5, 9, 12])
    assert [len(s.seq) for s in out] == [5, 9, 12, 5, 9, 12]
    assert all(set(str(s.seq)) <= set("ACDEFGHIKLMNPQRSTVWY") for s in out)
    assert out[0].annotations["family"] == "alpha" and out[0].annotations["length"] == 5
    assert out[0].annotations["steps"] == "per_residue"
    assert {len(s.seq) for s in pipe.sample(30, family="alpha")} == {8, 9}
    with pytest.raises(ValueError, match="unknown family 'gamma'"):
        pipe.sample(1, family="gamma")
    with pytest.raises(ValueError, match="beyond the sequence length 4"):
        pipe.sample(1, length=4, motif=Motif.parse("3-5:AAA"))


def test_the_same_seed_gives_the_same_samples(pipe):
    one = pipe.sample(10, family="alpha", batch_size=4, seed=11)
    two = pipe.sample(10, family="alpha", batch_size=4, seed=11)
    other = pipe.sample(10, family="alpha", batch_size=4, seed=12)
    assert sequences(one) == sequences(two)
    assert sequences(one) != sequences(other)
    assert one[0].annotations["seed"] == 11


def test_confidence_noise_reorders_reveals_and_is_recorded(pipe):
    plain = {"sampler": "confidence", "steps": 4}
    noisy = {**plain, "options": {"confidence_noise": 4.5}}
    one = pipe.sample(12, family="alpha", length=12, seed=5, **plain)
    two = pipe.sample(12, family="alpha", length=12, seed=5, **noisy)
    again = pipe.sample(12, family="alpha", length=12, seed=5, **noisy)
    assert sequences(two) == sequences(again)
    assert sequences(one) != sequences(two)
    assert two[0].annotations["confidence_noise"] == 4.5
    assert "confidence_noise" not in one[0].annotations
    with pytest.raises(ValueError, match="'masked_ancestral' takes no option 'confidence_noise'"):
        pipe.sample(1, sampler="masked_ancestral", options={"confidence_noise": 1.0})
    with pytest.raises(ValueError, match="confidence_noise must be >= 0"):
        pipe.sample(1, sampler="confidence", options={"confidence_noise": -1.0})


def test_confidence_measure_changes_the_order_and_is_recorded(pipe):
    plain = {"sampler": "confidence", "steps": 4}
    one = pipe.sample(12, family="alpha", length=12, seed=5, **plain)
    two = pipe.sample(
        12, family="alpha", length=12, seed=5, options={"confidence": "entropy"}, **plain
    )
    assert sequences(one) != sequences(two)
    assert two[0].annotations["confidence"] == "entropy" and "confidence" not in one[0].annotations
    with pytest.raises(ValueError, match="'masked_ancestral' takes no option 'confidence'"):
        pipe.sample(1, sampler="masked_ancestral", options={"confidence": "margin"})
    with pytest.raises(ValueError, match="confidence must be one of"):
        pipe.sample(1, sampler="confidence", options={"confidence": "surprise"})


def test_entropy_bound_sets_the_pace_and_is_recorded(untrained, pipe):
    calls = [0]
    untrained.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    steps = {}
    for bound in (0.0, 1e3):  # never / always fits: one residue per call / all in one call
        calls[0] = 0
        out = pipe.sample(
            2, family="alpha", length=12, sampler="confidence", options={"entropy_bound": bound}
        )
        steps[bound] = calls[0]
        assert out[0].annotations["entropy_bound"] == bound and len(out[0].seq) == 12
    assert steps == {0.0: 12, 1e3: 1}
    with pytest.raises(ValueError, match="'masked_ancestral' takes no option 'entropy_bound'"):
        pipe.sample(1, sampler="masked_ancestral", options={"entropy_bound": 1.0})
    with pytest.raises(ValueError, match="entropy_bound must be >= 0"):
        pipe.sample(1, sampler="confidence", options={"entropy_bound": -1.0})


@pytest.mark.parametrize("sampler", ["masked_ancestral", "confidence"])
def test_top_p_reaches_the_sampler_and_is_recorded(pipe, sampler):
    # the untrained model is nearly uniform: a full draw uses most residues, a nucleus too
    # small for a second residue only each position's most likely one
    draw = {"family": "alpha", "length": 12, "seed": 5, "sampler": sampler, "steps": 4}
    one = pipe.sample(8, options={"top_p": 1e-6}, **draw)
    two = pipe.sample(8, **draw)
    used = [len(set("".join(sequences(out)))) for out in (one, two)]
    assert used[0] <= 4 and used[1] >= 12, used
    assert one[0].annotations["top_p"] == 1e-6 and "top_p" not in two[0].annotations
    with pytest.raises(ValueError, match="top_p must lie in"):
        pipe.sample(1, sampler=sampler, options={"top_p": 1.5})


def test_unknown_samplers_options_and_grids_are_refused(pipe):
    with pytest.raises(ValueError, match="unknown token sampler 'ddim'"):
        pipe.sample(1, sampler="ddim")
    with pytest.raises(ValueError, match="'confidence' takes no option 'eta'"):
        pipe.sample(1, sampler="confidence", options={"eta": 1.0})
    with pytest.raises(ValueError, match="takes no option 'mask'"):  # set by the pipeline
        pipe.sample(1, options={"mask": None})
    with pytest.raises(ValueError, match="grid must be one of linear, cosine"):
        pipe.sample(1, options={"grid": "karras"})
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        pipe.sample(1, steps=0)


def test_best_of_keeps_the_candidate_the_model_finds_most_likely(untrained, pipe):
    # a model that favours alanine (p ~ 0.5 against ~0.025 for each other residue), so the
    # more A a sequence holds, the likelier it is to the model
    with torch.no_grad():
        untrained.esm.lm_head.bias[encode("A")] += 3.0
    picked = pipe.sample(10, family="alpha", length=12, seed=4, best_of=8)
    # the candidates of sample i are samples 8i..8i+7 of best_of=1 with the same seed
    drawn = sequences(pipe.sample(80, family="alpha", length=12, seed=4))
    groups = [[c.count("A") for c in drawn[8 * i : 8 * i + 8]] for i in range(10)]
    for s, group, i in zip(sequences(picked), groups, range(10), strict=True):
        assert s in drawn[8 * i : 8 * i + 8]
        # the ranking's bound is a 4-draw estimate, so a near tie may go either way
        assert s.count("A") >= sorted(group)[4], (s, group)
    mean_picked = sum(s.count("A") for s in sequences(picked)) / 10
    assert mean_picked > sum(map(sum, groups)) / 80 + 1.5
    assert picked[0].annotations["best_of"] == 8
    assert "best_of" not in pipe.sample(1, length=12)[0].annotations
    with pytest.raises(ValueError, match="best_of must be a positive integer"):
        pipe.sample(1, best_of=0)
    # best_of ranks whole new sequences: infilling and editing take no best_of
    with pytest.raises(TypeError, match="best_of"):
        pipe.edit(TOY, 0.5, best_of=8)
    with pytest.raises(TypeError, match="best_of"):
        pipe.infill(TOY, "2-3", best_of=8)


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


def test_infill_changes_only_the_chosen_regions(pipe):
    out = pipe.infill(TOY, "2-3,6", seed=1)
    for new, old in zip(out, TOY, strict=True):
        keep = [i for i in range(len(old.sequence)) if i not in (1, 2, 5)]
        assert [new.seq[i] for i in keep] == [old.sequence[i] for i in keep]
        assert len(new.seq) == len(old.sequence)
        assert new.annotations["source"] == old.id and new.annotations["family"] == old.family
        assert new.annotations["infilled"] == "2-3,6" and new.id == f"{old.id}_infill"
    assert sequences(pipe.infill(TOY, "2-3,6", seed=1)) == sequences(out)
    # SeqRecords (a sample's output) go back in, their family read from the annotations
    again = pipe.infill(out, "1")
    assert [r.annotations["family"] for r in again] == [r.family for r in TOY]
    with pytest.raises(ValueError, match="outside 1..8"):
        pipe.infill(TOY[:1], "7-9")
    with pytest.raises(ValueError, match="cannot read region 'x'"):
        pipe.infill(TOY[:1], "x")


def test_edit_changes_something_and_keeps_the_rest(pipe):
    records = TOY * 5
    changed = pipe.edit(records, 0.5, seed=2)
    assert any(str(n.seq) != o.sequence for n, o in zip(changed, records, strict=True))
    for new, old in zip(changed, records, strict=True):
        assert len(new.seq) == len(old.sequence)
        # half of the residues were re-masked; the other half is kept as it was
        same = sum(a == b for a, b in zip(str(new.seq), old.sequence, strict=True))
        assert same >= len(old.sequence) - round(0.5 * len(old.sequence))
        assert new.annotations["strength"] == 0.5 and new.annotations["source"] == old.id
    assert sequences(pipe.edit(records, 0.5, seed=2)) == sequences(changed)
    with pytest.raises(ValueError, match=r"strength must lie in \(0, 1\]"):
        pipe.edit(TOY, 0.0)


def test_saved_samples_read_back_with_ids_sequences_and_families(pipe, tmp_path):
    motif = Motif.parse("2-3:WC")
    records = pipe.sample(3, family="alpha", motif=motif, steps=4, seed=1) + pipe.sample(
        2, family="beta", sampler="confidence", options={"grid": "cosine", "top_p": 0.9}
    )
    records += pipe.infill(TOY[:2], "2-3")
    path = pipe.save(records, tmp_path / "out" / "samples.fasta")
    back = read_sequences(path, ReadOptions(family_field="family")).records
    assert [r.id for r in back] == [r.id for r in records]
    assert [r.sequence for r in back] == sequences(records)
    assert [r.family for r in back] == [r.annotations["family"] for r in records]
    # every header field is written
    for written, record in zip(SeqIO.parse(path, "fasta"), records, strict=True):
        fields = {k: str(v) for k, v in record.annotations.items()}
        assert parse_header(written.description) == fields


def test_a_saved_pipeline_samples_the_same_sequences(pipe, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "model")
    loaded = ProteinPipeline.from_pretrained(folder)
    assert loaded.families == pipe.families
    draw = {"family": "beta", "seed": 7, "options": {"temperature": 0.8}}
    for length in (None, 9):  # lengths drawn from the saved length prior, or given
        saved, live = (sequences(p.sample(6, length=length, **draw)) for p in (loaded, pipe))
        assert saved == live


@pytest.mark.parametrize("block", [None, 4])
def test_samples_do_not_depend_on_the_batch_size(block):
    torch.manual_seed(0)
    pipe = ProteinPipeline(build_denoiser(TOY, load_preset("tiny"), diffusion_block=block).eval())
    lengths = [5, 9, 12, 5, 10, 12, 3, 9, 9, 10]
    motif = Motif.parse("2-3:WC")
    runs = [
        {"n": 10, "family": "alpha", "length": lengths},
        {"n": 6, "family": "beta", "motif": motif, "steps": 6, "seed": 3, "best_of": 2},
        {"n": 10, "length": lengths, "sampler": "confidence", "options": {"confidence_noise": 4.5}},
    ]
    if block is None:  # a block-diffusion model samples with the confidence sampler only
        runs[1]["sampler"] = "masked_ancestral"
    else:
        runs[0]["sampler"] = "confidence"
    for run in runs:
        n = run.pop("n")
        one, eight = (sequences(pipe.sample(n, batch_size=size, **run)) for size in (1, 8))
        assert one == eight, run
    infill, edit = (
        [sequences(f(TOY * 3, arg, batch_size=size, seed=1)) for size in (1, 8)]
        for f, arg in ((pipe.infill, "2-3"), (pipe.edit, 0.5))
    )
    assert infill[0] == infill[1]
    assert edit[0] == edit[1]


def test_a_block_models_edits_do_not_depend_on_the_batch_size():
    """Rows whose block is done early draw nothing while a batch-mate's block goes on."""
    torch.manual_seed(0)
    pipe = ProteinPipeline(build_denoiser(TOY, load_preset("tiny"), diffusion_block=4).eval())
    records = [ProteinRecord(f"r{i}", "MKVLSAGWYMKVLSAG", "alpha") for i in range(12)]
    for options in ({}, {"confidence_noise": 4.5}, {"threshold": 0.05}):
        one, eight = (
            sequences(pipe.edit(records, 0.5, options=options, batch_size=size, seed=1))
            for size in (1, 8)
        )
        assert one == eight, options


def test_experts_of_one_network_per_range_of_masked_shares_sample_as_the_network(untrained):
    """Experts per masked share compose by the step's share (ProteinDenoiserConfig.mask_range):
    copies of one network, each given a range, reproduce the network's samples exactly."""
    import copy
    import dataclasses

    experts = []
    for r in [(0.0, 0.4), (0.4, 1.0)]:
        expert = copy.deepcopy(untrained)
        expert.config = dataclasses.replace(untrained.config, mask_range=r)
        experts.append(expert)
    composed = ProteinPipeline(experts[1], experts=[experts[0]])
    settings = dict(family="alpha", length=12, steps=6, sampler="confidence", seed=3)
    expected = sequences(ProteinPipeline(untrained).sample(3, **settings))
    assert sequences(composed.sample(3, **settings)) == expected
    guided = dict(settings, guidance=2.0)
    assert sequences(composed.sample(3, **guided)) == sequences(
        ProteinPipeline(untrained).sample(3, **guided)
    )
    with pytest.raises(ValueError, match="split the times"):
        ProteinPipeline(experts[0])
    with pytest.raises(ValueError, match="masked models"):
        dataclasses.replace(untrained.config, corruption="substitution", mask_range=(0.0, 0.5))
