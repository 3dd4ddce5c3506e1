"""Substitution models (``corruption`` "substitution" / "blosum"): BLOSUM62 replacement rows
favour similar residues and never keep the residue, training uses ``SubstitutionProcess.loss``
with padding and families as the masked loss has them, the pipeline samples with the
substitute sampler and never changes known residues, and no likelihood bound is made up."""

import json

import pytest
import torch

from diffcore.io import from_pretrained, save_pretrained
from diffcore.training import drop_condition
from diffprotein.alphabet import MASK_ID, PAD_ID, RESIDUE_IDS, X_ID, encode
from diffprotein.conditioning import Motif
from diffprotein.corruption import substitution_process
from diffprotein.data import ProteinRecord
from diffprotein.model import ProteinDenoiser, ProteinDenoiserConfig, load_preset
from diffprotein.pipeline import ProteinPipeline
from diffprotein.training import DenoiserLoss, SequenceDataset, build_denoiser, collate, likelihood

TOY = [
    ProteinRecord("a1", "MKVLAAGW", "alpha"),
    ProteinRecord("a2", "MKVLSAGWY", "alpha"),
    ProteinRecord("b1", "GSHMCCPQ", "beta"),
    ProteinRecord("b2", "GSHMCCPQRT", "beta"),
]


def token(letter: str) -> int:
    return int(encode(letter)[0])


@pytest.fixture
def blosum_pipe():
    torch.manual_seed(0)
    return ProteinPipeline(build_denoiser(TOY, load_preset("tiny"), corruption="blosum").eval())


def test_blosum_rows_favour_similar_residues_and_never_keep_the_residue():
    r = substitution_process("blosum").replacement
    i, v, d = token("I"), token("V"), token("D")
    # BLOSUM62: I-V scores 3, I-D -3 half-bits, so I -> V is 2 ** ((3 - -3) / 2) = 8x likelier
    assert r[i, v] > r[i, d]
    assert float(r[i, v] / r[i, d]) == pytest.approx(8.0)
    residues = list(RESIDUE_IDS)
    assert torch.all(r[residues, residues] == 0)  # a residue is always swapped for another
    others = [k for k in range(r.shape[1]) if k not in residues]
    assert torch.all(r[:, others] == 0)  # never X, <mask>, <pad> or another special token
    assert torch.allclose(r.sum(1), torch.ones(len(r), dtype=r.dtype))
    assert float(r[X_ID, v]) == pytest.approx(1 / 20)  # an unknown residue: any of the 20


def test_uniform_substitution_and_both_priors_spread_evenly_over_the_20_residues():
    uniform = substitution_process("substitution")
    even = torch.zeros(uniform.vocab_size, dtype=torch.float64)
    even[list(RESIDUE_IDS)] = 1 / 20
    for process in (uniform, substitution_process("blosum")):
        assert torch.allclose(process.prior, even)
        assert process.mask_id == MASK_ID
    assert torch.allclose(uniform.replacement[token("I")], even)
    assert substitution_process("mask") is None


def test_the_corruption_is_validated_and_a_config_without_it_is_a_masked_model(tmp_path):
    with pytest.raises(ValueError, match="corruption must be one of mask, substitution, blosum"):
        ProteinDenoiserConfig(**load_preset("tiny"), corruption="noise")
    with pytest.raises(ValueError, match="'blosum' cannot be combined with diffusion_block 4"):
        ProteinDenoiserConfig(**load_preset("tiny"), corruption="blosum", diffusion_block=4)
    model = ProteinDenoiser(ProteinDenoiserConfig(**load_preset("tiny"), corruption="blosum"))
    folder = save_pretrained(model, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    assert config.pop("corruption") == "blosum"
    assert from_pretrained(ProteinDenoiser, folder).config.substitution is not None
    (folder / "config.json").write_text(json.dumps(config))  # as written before the field
    old = from_pretrained(ProteinDenoiser, folder).config
    assert old.corruption == "mask" and old.substitution is None


def test_training_loss_is_the_substitution_loss_on_the_same_draws():
    torch.manual_seed(0)
    model = build_denoiser(TOY, load_preset("tiny"), corruption="blosum")
    data = SequenceDataset(TOY, model.config.families, model.config.max_length)
    batch = collate([data[i] for i in range(len(data))])  # rows of 8 to 10: padding
    assert bool((batch["tokens"] == PAD_ID).any())
    loss = DenoiserLoss.for_model(model, family_dropout=0.5)
    got = loss(model, batch, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    family = drop_condition(batch["family"], 0.5, -1, g)
    tokens = batch["tokens"]
    process = substitution_process("blosum")
    want = process.loss(model, tokens, g, loss_mask=tokens != PAD_ID, family=family)
    assert torch.equal(got, want)
    masked = DenoiserLoss(family_dropout=0.5)(model, batch, torch.Generator().manual_seed(3))
    assert not torch.equal(got, masked)  # the corruption really changed what is trained


def test_a_substitution_pipeline_samples_with_substitute_and_keeps_the_motif(blosum_pipe):
    assert blosum_pipe.default_sampler == "substitute"
    motif = Motif.parse(["3-5:CCC", "10:W"])
    records = blosum_pipe.sample(4, family="alpha", length=12, motif=motif, steps=4, seed=1)
    for r in records:
        assert len(r.seq) == 12 and r.seq[2:5] == "CCC" and r.seq[9] == "W"
        assert r.annotations["sampler"] == "substitute"
    again = blosum_pipe.sample(4, family="alpha", length=12, motif=motif, steps=4, seed=1)
    assert [str(r.seq) for r in again] == [str(r.seq) for r in records]


def test_infilling_with_a_substitution_model_keeps_every_residue_outside_the_regions(blosum_pipe):
    options = {"resample": "confidence"}
    out = blosum_pipe.infill(TOY, "2-4,7", steps=3, options=options)
    for source, r in zip(TOY, out, strict=True):
        kept = [k for k in range(len(source.sequence)) if k not in (1, 2, 3, 6)]
        assert [r.seq[k] for k in kept] == [source.sequence[k] for k in kept]
        assert r.annotations["resample"] == "confidence"


def test_no_likelihood_is_made_up_for_a_substitution_model(blosum_pipe):
    with pytest.raises(ValueError, match="no likelihood bound for a substitution model"):
        likelihood(blosum_pipe.model, TOY)
    with pytest.raises(ValueError, match="no likelihood bound for a substitution model"):
        blosum_pipe.sample(2, length=8, best_of=2)
    with pytest.raises(ValueError, match="unknown substitution sampler 'confidence'"):
        blosum_pipe.sample(2, length=8, sampler="confidence")
