"""Block diffusion (BD3-LM) for proteins: the training layout predicts what sampling sees, no
residue reads a later block, a tiny block model learns real sequences, and sampling goes block
by block while keeping motifs, seeds and lengths."""

import pytest
import torch

from diffcore.io import from_pretrained
from diffcore.training import TrainConfig
from diffprotein.alphabet import MASK_ID, PAD_ID, encode
from diffprotein.conditioning import Motif
from diffprotein.data import ProteinRecord, read_sequences, split_holdout
from diffprotein.model import ProteinDenoiser, ProteinDenoiserConfig, load_preset
from diffprotein.pipeline import ProteinPipeline
from diffprotein.training import build_denoiser, likelihood, train_denoiser

TOY = [
    ProteinRecord("a1", "MKVLAAGWMKVLAAGW", "alpha"),
    ProteinRecord("a2", "MKVLSAGWYMKVLSAG", "alpha"),
    ProteinRecord("b1", "GSHMCCPQGSHMCC", "beta"),
    ProteinRecord("b2", "GSHMCCPQRTGSHMCCPQ", "beta"),
]
SHAPE = dict(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_length=40)


def block_model(block: int, position: str = "rotary", attention: str = "sdpa"):
    torch.manual_seed(0)
    config = ProteinDenoiserConfig(
        **SHAPE, position_embedding_type=position, families=("a", "b"), diffusion_block=block
    )
    model = ProteinDenoiser(config).eval()
    model.esm.config._attn_implementation = attention
    return model


def padded(*sequences: str, width: int = 20) -> torch.Tensor:
    rows = [encode(s) for s in sequences]
    return torch.stack([torch.cat([r, torch.full((width - len(r),), PAD_ID)]) for r in rows])


@pytest.mark.parametrize("position", ["rotary", "absolute"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@torch.no_grad()
def test_training_layout_matches_sampling_and_later_blocks_never_leak(position, attention):
    model = block_model(4, position, attention)
    x0 = padded("ACDEFGHIKLMNPQRSTVWY", "ACDEFGHIKLMNP")  # the second row is padded
    family = torch.tensor([0, 1])
    xt = x0.clone()
    xt[:, 4:8] = MASK_ID  # block 1 is being generated ...
    xt[0, 12:14] = MASK_ID  # ... and block 3 is noisy too (training masks every block)
    trained = model(xt, family=family, context=x0)
    # sampling: blocks before block 1 clean, blocks after it all masks
    later = torch.where(x0 == PAD_ID, PAD_ID, MASK_ID)
    seen = torch.cat([xt[:, :8], later[:, 8:]], 1)
    sampled = model(seen, family=family)
    torch.testing.assert_close(trained[:, 4:8], sampled[:, 4:8], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(trained).all() and torch.isfinite(sampled).all()
    # whatever stands in later blocks, earlier blocks' logits do not move ...
    other = seen.clone()
    other[0, 8:12] = encode("WWWW")
    moved = model(other, family=family)
    assert torch.equal(moved[:, :8], sampled[:, :8])
    assert not torch.allclose(moved[0, 8:12], sampled[0, 8:12])  # ... while block 2's own do
    # the length (<eos>) and the family reach every block, the first one included
    shorter = torch.where(torch.arange(20) >= 18, PAD_ID, seen)
    assert not torch.allclose(model(shorter, family=family)[0, :4], sampled[0, :4])
    assert not torch.allclose(model(seen, family=family.flip(0))[0, :4], sampled[0, :4])


@pytest.mark.parametrize("position", ["rotary", "absolute"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@torch.no_grad()
def test_skipping_later_blocks_keeps_every_logit_a_sampler_reads(position, attention):
    model = block_model(4, position, attention)
    # ragged rows: one ends inside the kept blocks, one right after them, one much later
    x = padded("ACDEFGHIKLMNPQRSTVWY", "ACDEFG", "ACDEFGHI")
    x[0, 4:] = MASK_ID  # block 1 is being drawn in row 0 ...
    x[1, 5:6] = MASK_ID
    x[2, 6:8] = MASK_ID  # ... and in the others; everything after it is masks or padding
    x[0, 9] = encode("W")  # a motif residue in a later block is left out too
    family = torch.tensor([0, 1, -1])
    full = model(x, family=family)
    cut = model(x, family=family, skip_later_blocks=True)
    torch.testing.assert_close(cut[:, :8], full[:, :8], atol=1e-5, rtol=1e-5)
    rest = cut[:, 8:]
    assert bool(((rest == 0) | (rest < -1e8)).all())  # the rest: 0, or banned tokens' logit ...
    assert not torch.equal(rest[0], full[0, 8:])  # ... not the model's prediction
    # the length still reaches the kept blocks: row 0 shortened by two residues
    shorter = x.clone()
    shorter[0, 18:] = PAD_ID
    moved = model(shorter, family=family, skip_later_blocks=True)
    assert not torch.allclose(moved[0, :8], cut[0, :8])
    # nothing to leave out: the same as the full pass
    done = padded("ACDEFGHIKLMNPQRSTVWY", "ACDEFG", "ACDEFGHI")
    done[:, 16:] = torch.where(done[:, 16:] == PAD_ID, PAD_ID, MASK_ID)
    torch.testing.assert_close(
        model(done, family=family, skip_later_blocks=True), model(done, family=family)
    )


def test_context_is_refused_by_a_whole_sequence_model_and_checked_by_a_block_one():
    torch.manual_seed(0)
    plain = ProteinDenoiser(ProteinDenoiserConfig(**SHAPE))
    x = padded("ACDE", width=4)
    with pytest.raises(ValueError, match="block-diffusion models only"):
        plain(x, context=x)
    with pytest.raises(ValueError, match="context must be the clean residues"):
        block_model(2)(x, context=x[:, :3])
    with pytest.raises(ValueError, match="diffusion_block must be a positive integer"):
        ProteinDenoiserConfig(**SHAPE, diffusion_block=0)


def test_a_tiny_block_model_learns_real_sequences_and_keeps_its_block(shared_data, tmp_path):
    records = read_sequences(shared_data / "proteins" / "families" / "kunitz.fasta").records
    train, held = split_holdout(records[:640], 0.1)
    torch.manual_seed(0)
    model = build_denoiser(train, load_preset("tiny"), diffusion_block=8)
    before = likelihood(model, held, samples=4)
    config = TrainConfig(steps=100, batch_size=32, lr=3e-3, ema_decay=None, log_every=10)
    result = train_denoiser(model, train, config, tmp_path / "run", progress=False)
    after = likelihood(model, held, samples=4)
    # nats per residue on held-out sequences, a bound per block: from chance (~ln 21) well below
    assert before > 2.95 and after < before - 0.15
    saved = from_pretrained(ProteinDenoiser, result.final_model).eval()
    assert saved.config.diffusion_block == 8
    assert likelihood(saved, held[:20], samples=2) == pytest.approx(
        likelihood(model.eval(), held[:20], samples=2), rel=1e-5
    )


def test_block_sampling_goes_left_to_right_and_keeps_motifs_seeds_and_lengths():
    torch.manual_seed(0)
    model = build_denoiser(TOY, load_preset("tiny"), diffusion_block=4).eval()
    seen = []
    forward = model.forward

    def spy(x, *args, **kwargs):
        seen.append(x.clone())
        return forward(x, *args, **kwargs)

    model.forward = spy
    pipe = ProteinPipeline(model)
    motif = Motif.parse("6-7:WC")
    draw = dict(family="beta", length=14, motif=motif, sampler="confidence", steps=5, seed=2)
    out = pipe.sample(5, batch_size=3, **draw)
    assert [len(s.seq) for s in out] == [14] * 5
    assert all(motif.preserved_in(str(s.seq)) for s in out)
    # 4 blocks of 4 columns (14 residues): 5 steps round up to 2 per block; in every call, no
    # block is touched before the ones on its left are done
    assert len(seen) == 2 * 8  # 2 batches (3 + 2 rows) x 8 steps
    generated = torch.ones(14, dtype=torch.bool)
    generated[5:7] = False  # the motif's columns are known from the start
    for x in seen:
        masked = (x == MASK_ID)[:, generated]
        columns = torch.arange(14)[generated]
        current = int(columns[masked.any(0)].min()) // 4  # the leftmost block left to generate
        assert bool(masked[:, columns // 4 > current].all())
    model.forward = forward
    again = pipe.sample(5, batch_size=3, **draw)
    assert [str(s.seq) for s in again] == [str(s.seq) for s in out]
    assert pipe.sample(1, length=8)[0].annotations["sampler"] == "confidence"  # its default
    with pytest.raises(ValueError, match="generates block by block"):
        pipe.sample(1, length=8, sampler="masked_ancestral")
    # ranking candidates scores them with the block bound, motif residues as context
    picked = pipe.sample(3, batch_size=4, best_of=3, **draw)
    assert [len(s.seq) for s in picked] == [14] * 3
    assert all(motif.preserved_in(str(s.seq)) for s in picked)
    assert picked[0].annotations["best_of"] == 3
