"""The amino-acid alphabet and the token vocabulary of the denoiser.

Token ids follow ESM-2's 33-token vocabulary exactly (``<cls> <pad> <eos> <unk>``, 25 residue
letters, ``. - <null_1> <mask>``), so ESM-2 weights a user has on disk load unchanged; one
token per family is appended after it (``<family:NAME>``, ids 33, 34, ...).

Residue policy (applied when sequences are read, ``normalize_residue``):

- the 20 standard amino acids ``ACDEFGHIKLMNPQRSTVWY`` are kept;
- ``X`` (unknown) is kept: it is a legal input token, but samplers never generate it;
- ``B`` (Asx: D or N) and ``Z`` (Glx: E or Q) and ``J`` (Xle: I or L) are ambiguity codes and
  become ``X``;
- ``U`` (selenocysteine) becomes ``C`` and ``O`` (pyrrolysine) becomes ``K``, the standard
  residues they are encoded in place of (UGA / UAG read-through of a Cys / Lys-like residue),
  so the model never spends capacity on letters seen a handful of times;
- anything else is an error naming the record (see ``diffprotein.data``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "AMINO_ACIDS",
    "ESM_VOCAB",
    "MASK_ID",
    "NONSTANDARD",
    "RESIDUE_IDS",
    "decode",
    "encode",
    "family_token",
    "normalize_residue",
]

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"  # the 20 standard residues, alphabetical
NONSTANDARD = {"B": "X", "Z": "X", "J": "X", "U": "C", "O": "K"}  # see the module docstring

ESM_VOCAB: tuple[str, ...] = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N", "F", "Y", "M", "H",
    "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
)  # fmt: skip
CLS_ID, PAD_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
MASK_ID = ESM_VOCAB.index("<mask>")  # 32
BASE_VOCAB_SIZE = len(ESM_VOCAB)  # 33; family tokens follow
X_ID = ESM_VOCAB.index("X")

_TOKEN_ID = {tok: i for i, tok in enumerate(ESM_VOCAB)}
RESIDUE_IDS: tuple[int, ...] = tuple(_TOKEN_ID[a] for a in AMINO_ACIDS)  # generated residues
INPUT_RESIDUE_IDS: tuple[int, ...] = (*RESIDUE_IDS, X_ID)  # residues a sequence may contain
_ENCODE = torch.full((128,), -1, dtype=torch.long)
for _letter in AMINO_ACIDS + "X":
    _ENCODE[ord(_letter)] = _TOKEN_ID[_letter]


def normalize_residue(letter: str) -> str | None:
    """The residue a letter stands for under the policy above (uppercase in, uppercase out),
    or None when it is not an amino-acid code."""
    if letter in AMINO_ACIDS or letter == "X":
        return letter
    return NONSTANDARD.get(letter)


def encode(sequence: str) -> Tensor:
    """Token ids (L,) long of a normalized sequence (20 standard letters and X only).

    Raises ValueError naming the first letter outside that set and its 1-based position."""
    codes = torch.tensor(list(sequence.encode("ascii", errors="replace")), dtype=torch.long)
    ids = _ENCODE[codes.clamp_max(127)] if len(codes) else codes
    bad = (ids < 0).nonzero()
    if len(bad):
        pos = int(bad[0])
        raise ValueError(
            f"cannot encode {sequence[pos]!r} at position {pos + 1}: expected one of "
            f"{AMINO_ACIDS}X (normalize the sequence first, diffprotein.data does)"
        )
    return ids


def decode(ids: Tensor | Sequence[int]) -> str:
    """The letters of residue token ids (L,); padding is dropped. Raises ValueError on any
    special token (a mask left in a sample, a family token) so none is written silently."""
    letters = []
    for i, tok in enumerate(torch.as_tensor(ids).tolist()):
        if tok == PAD_ID:
            continue
        if not 0 <= tok < BASE_VOCAB_SIZE or tok not in INPUT_RESIDUE_IDS:
            name = ESM_VOCAB[tok] if 0 <= tok < BASE_VOCAB_SIZE else f"id {tok}"
            raise ValueError(f"token {name} at position {i + 1} is not a residue")
        letters.append(ESM_VOCAB[tok])
    return "".join(letters)


def family_token(index: int) -> int:
    """Token id of the family with 0-based ``index`` in a model's family list."""
    return BASE_VOCAB_SIZE + index
