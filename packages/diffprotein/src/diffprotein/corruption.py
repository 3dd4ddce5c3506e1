"""What a protein denoiser learns to undo (``ProteinDenoiserConfig.corruption``):

- ``"mask"``: residues hidden behind ``<mask>`` (``MaskProcess``; ``diffprotein.model``);
- ``"substitution"``: residues replaced by wrong ones drawn uniformly from the 20 standard
  residues (uniform discrete diffusion, D3PM's "uniform" corruption);
- ``"blosum"``: residues replaced by wrong ones drawn from BLOSUM62's conditional row
  (Henikoff & Henikoff 1992), so a substitution is likelier the more often evolution makes it.

A substitution model does not learn where the errors are from a mask: it must find them, so it
can refine any sequence; it is sampled by refinement (``diffcore.samplers.sample_substitute``)
and has no masked-diffusion likelihood bound.
"""

from __future__ import annotations

import functools

import torch

from diffcore.processes.substitution import (
    SubstitutionProcess,
    blosum_replacement,
    uniform_replacement,
)
from diffprotein.alphabet import AMINO_ACIDS, BASE_VOCAB_SIZE, MASK_ID, RESIDUE_IDS

__all__ = ["CORRUPTIONS", "blosum62_scores", "check_has_likelihood", "substitution_process"]

CORRUPTIONS = ("mask", "substitution", "blosum")


def blosum62_scores() -> dict[tuple[int, int], float]:
    """BLOSUM62 (half-bit scores, as shipped with Biopython) between the 20 standard residues,
    keyed by token ids ``(a, b)``."""
    from Bio.Align import substitution_matrices

    matrix = substitution_matrices.load("BLOSUM62")
    ids = dict(zip(AMINO_ACIDS, RESIDUE_IDS, strict=True))
    return {(ids[a], ids[b]): float(matrix[a, b]) for a in AMINO_ACIDS for b in AMINO_ACIDS}


@functools.cache
def substitution_process(corruption: str) -> SubstitutionProcess | None:
    """The ``SubstitutionProcess`` of a model trained with ``corruption`` (None for "mask").

    Replacement rows cover the 20 standard residues only (never ``X``, ``<mask>`` or a special
    token: what samplers may generate). The prior, where generation starts, is uniform over
    them: for "substitution" it is exactly what training sees at t = 1; for "blosum" no start
    independent of the answer matches training (a BLOSUM draw still leans towards the residue
    it replaced), so the start favours no residue and the refinement steps set the composition.
    """
    if corruption not in CORRUPTIONS:
        raise ValueError(f"corruption must be one of {', '.join(CORRUPTIONS)}, got {corruption!r}")
    if corruption == "mask":
        return None
    if corruption == "substitution":
        replacement = uniform_replacement(BASE_VOCAB_SIZE, RESIDUE_IDS)
    else:
        replacement = blosum_replacement(BASE_VOCAB_SIZE, blosum62_scores(), RESIDUE_IDS)
    prior = torch.zeros(BASE_VOCAB_SIZE, dtype=torch.float64)
    prior[list(RESIDUE_IDS)] = 1.0 / len(RESIDUE_IDS)
    return SubstitutionProcess(replacement, MASK_ID, prior=prior)


def check_has_likelihood(corruption: str) -> None:
    """Raise ValueError unless ``corruption`` is "mask": the likelihood bound
    (``MaskProcess.nll_bound``) scores predictions of masked residues, which a model trained
    on substitution never learned to make, so its numbers would mean nothing."""
    if corruption != "mask":
        raise ValueError(
            f"no likelihood bound for a substitution model (corruption {corruption!r}): "
            "only masked-diffusion models have one"
        )
