"""Motifs, family indices and the length prior."""

import pytest
import torch

from diffprotein.alphabet import MASK_ID, PAD_ID, decode
from diffprotein.conditioning import LengthPrior, Motif, family_ids


def test_motif_syntax_start_end_or_start_only_and_several_segments():
    motif = Motif.parse(["30-32:wyw", "15:ACDE"])
    assert str(motif) == "15-18:ACDE,30-32:WYW"  # sorted, uppercased, canonical
    assert motif.end == 32 and len(motif) == 7
    assert Motif.parse("15-18:ACDE,30:WYW") == motif


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("15-30:ACD", "positions 15-30 hold 16 residues but 3 letters"),
        ("ACD", "expected START-END:RESIDUES"),
        ("0:ACD", "starts before position 1"),
        ("5:ACD,6:WW", "overlap"),
        ("5:AXB", "20 standard letters"),
    ],
)
def test_bad_motifs_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        Motif.parse(text)


def test_known_and_mask_place_the_motif_and_check_it_fits():
    motif = Motif.parse("2-3:WY")
    known, mask = motif.known_and_mask(4, width=6)
    assert mask.tolist() == [False, True, True, False, False, False]
    assert decode(known[mask]) == "WY" and bool((known[~mask] == PAD_ID).all())
    assert MASK_ID not in known.tolist()
    assert motif.preserved_in("AWYA") and not motif.preserved_in("AWFA")
    with pytest.raises(ValueError, match="beyond the sequence length 2"):
        motif.known_and_mask(2)


def test_family_ids_name_unknown_families():
    assert family_ids(["b", None, "a"], ("a", "b")).tolist() == [1, -1, 0]
    with pytest.raises(ValueError, match="unknown family 'c'; this model knows: a, b"):
        family_ids(["c"], ("a", "b"))


def test_length_prior_draws_lengths_seen_for_the_family_and_survives_json():
    prior = LengthPrior.from_records([("a", 10), ("a", 12), ("b", 50), (None, 7)])
    again = LengthPrior.from_json(prior.to_json())
    assert again == prior
    g = torch.Generator().manual_seed(0)
    assert set(prior.sample("a", 200, g)) == {10, 12}
    assert set(prior.sample(None, 200, g)) == {7, 10, 12, 50}
    with pytest.raises(ValueError, match="no training lengths recorded for 'c'"):
        prior.sample("c", 1)
