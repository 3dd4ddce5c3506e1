"""The ESM denoiser: ESM-2's layout, banned tokens, family tokens, loading ESM-2 weights."""

import pytest
import torch

from diffcore.io import from_pretrained, save_pretrained
from diffprotein.alphabet import (
    BASE_VOCAB_SIZE,
    CLS_ID,
    EOS_ID,
    ESM_VOCAB,
    MASK_ID,
    PAD_ID,
    RESIDUE_IDS,
    X_ID,
    encode,
)
from diffprotein.model import (
    BANNED_LOGIT,
    ProteinDenoiser,
    ProteinDenoiserConfig,
    load_preset,
    wrap_sequences,
)


def tiny(families=("kunitz", "sh3")):
    torch.manual_seed(0)
    return ProteinDenoiser(ProteinDenoiserConfig(**load_preset("tiny"), families=families))


def test_encode_decode_round_trip_and_refuse_specials():
    from diffprotein.alphabet import decode

    assert decode(encode("ACDEFGHIKLMNPQRSTVWYX")) == "ACDEFGHIKLMNPQRSTVWYX"
    assert ESM_VOCAB[MASK_ID] == "<mask>" and len(ESM_VOCAB) == 33
    with pytest.raises(ValueError, match="'B' at position 2"):
        encode("AB")
    with pytest.raises(ValueError, match="<mask> at position 2 is not a residue"):
        decode([5, MASK_ID])


def test_network_sees_esm2_layout_with_family_token_and_eos_after_each_sequence():
    x = torch.tensor([[5, 6, 7], [5, PAD_ID, PAD_ID]])
    full, attention = wrap_sequences(x, torch.tensor([CLS_ID, BASE_VOCAB_SIZE + 1]))
    assert full.tolist() == [
        [CLS_ID, 5, 6, 7, EOS_ID],
        [BASE_VOCAB_SIZE + 1, 5, EOS_ID, PAD_ID, PAD_ID],
    ]
    assert attention.tolist() == [[True] * 5, [True, True, True, False, False]]
    with pytest.raises(ValueError, match="<pad> may only follow"):
        wrap_sequences(torch.tensor([[PAD_ID, 5]]), torch.tensor([CLS_ID]))


def test_logits_put_no_mass_on_special_tokens_and_x_only_when_allowed():
    model = tiny().eval()
    x = torch.tensor([[MASK_ID] * 4, [5, MASK_ID, PAD_ID, PAD_ID]])
    logits = model(x, torch.ones(2), family=torch.tensor([0, -1]))
    assert logits.shape == (2, 4, BASE_VOCAB_SIZE)
    allowed = set(RESIDUE_IDS) | {X_ID}
    banned = [i for i in range(BASE_VOCAB_SIZE) if i not in allowed]
    assert bool((logits[..., banned] == BANNED_LOGIT).all())
    assert bool((logits[..., list(allowed)] > BANNED_LOGIT).all())
    strict = model(x, torch.ones(2), family=torch.tensor([0, -1]), allow_unknown=False)
    assert bool((strict[..., X_ID] == BANNED_LOGIT).all())


def test_family_token_changes_the_prediction_and_bad_indices_are_refused():
    model = tiny().eval()
    x = torch.full((1, 6), MASK_ID)
    a, b = (model(x, None, family=torch.tensor([f])) for f in (0, 1))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match=r"family indices must lie in \[-1, 2\)"):
        model(x, None, family=torch.tensor([2]))
    with pytest.raises(ValueError, match="exceed this model's max_length"):
        model(torch.full((1, 513), MASK_ID), None)


def test_padding_a_shorter_sequence_does_not_change_its_logits():
    model = tiny().eval()
    alone = model(torch.tensor([[5, MASK_ID, 7]]), None)
    padded = model(torch.tensor([[5, MASK_ID, 7, PAD_ID, PAD_ID]]), None)
    torch.testing.assert_close(padded[:, :3], alone, atol=1e-5, rtol=1e-5)


def test_save_and_load_through_diffcore_io(tmp_path):
    model = tiny().eval()
    save_pretrained(model, tmp_path / "m")
    again = from_pretrained(ProteinDenoiser, tmp_path / "m").eval()
    assert again.config == model.config
    x = torch.tensor([[5, MASK_ID, 7, MASK_ID]])
    torch.testing.assert_close(
        again(x, None, family=torch.tensor([1])), model(x, None, family=torch.tensor([1]))
    )


def test_continued_pretraining_starts_from_esm2_weights_on_disk(tmp_path):
    from transformers import EsmForMaskedLM

    torch.manual_seed(1)
    shape = ProteinDenoiserConfig(**load_preset("tiny"))
    esm = EsmForMaskedLM(shape.esm_config(BASE_VOCAB_SIZE)).eval()
    esm.save_pretrained(tmp_path / "esm2")  # what a user's local ESM-2 folder holds
    (tmp_path / "esm2" / "vocab.txt").write_text("\n".join(ESM_VOCAB) + "\n")

    model = ProteinDenoiser.from_esm(tmp_path / "esm2", families=("a", "b")).eval()
    seq = encode("MKVLA")
    x = seq.clone()
    x[2] = MASK_ID
    ours = model(x[None], None)  # no family: <cls> first, exactly ESM-2's input
    full = torch.cat([torch.tensor([CLS_ID]), x, torch.tensor([EOS_ID])])
    theirs = esm(input_ids=full[None]).logits[:, 1:-1]
    allowed = list(RESIDUE_IDS) + [X_ID]
    torch.testing.assert_close(ours[..., allowed], theirs[..., allowed], atol=1e-5, rtol=1e-5)
    # a family token starts as a copy of <cls>, so conditioning starts as a no-op
    torch.testing.assert_close(model(x[None], None, family=torch.tensor([1])), ours)

    (tmp_path / "esm2" / "vocab.txt").write_text("A\nB\n")
    with pytest.raises(ValueError, match="not ESM-2's 33-token vocabulary"):
        ProteinDenoiser.from_esm(tmp_path / "esm2")
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        ProteinDenoiser.from_esm(tmp_path)


def test_presets_come_from_shared_presets_and_unknown_ones_are_named():
    assert load_preset("tiny", max_length=64)["max_length"] == 64
    with pytest.raises(ValueError, match="no preset 'huge'"):
        load_preset("huge")
