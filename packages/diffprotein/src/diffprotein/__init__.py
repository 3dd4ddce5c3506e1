"""Protein sequence diffusion: FASTA in and out, ESM-style denoisers, families, motif scaffolding.

    from diffprotein import read_sequences, build_denoiser, train_denoiser, ProteinPipeline

Modules: ``alphabet`` (ESM-2 tokens, residue policy), ``data`` (FASTA/A2M/A3M/Stockholm/
datasets readers, FASTA writer, held-out split), ``conditioning`` (motifs, lengths, families),
``model`` (the ESM denoiser), ``corruption`` (what it undoes: masks, or wrong residues drawn
uniformly or by BLOSUM62), ``training`` (train, likelihood, sequence_likelihoods),
``pipeline`` (ProteinPipeline: sample, infill, edit, save), ``judges`` (autoregressive peer, family classifier), ``evaluate``
(composition, novelty, diversity, motif preservation).
"""

from diffprotein.conditioning import LengthPrior, Motif
from diffprotein.data import (
    ProteinRecord,
    ProteinSet,
    ReadOptions,
    read_dataset,
    read_sequences,
    split_holdout,
    write_fasta,
)
from diffprotein.model import ProteinDenoiser, ProteinDenoiserConfig, load_preset
from diffprotein.pipeline import ProteinPipeline
from diffprotein.training import (
    build_denoiser,
    likelihood,
    sequence_likelihoods,
    train_denoiser,
)

__all__ = [
    "LengthPrior",
    "Motif",
    "ProteinDenoiser",
    "ProteinDenoiserConfig",
    "ProteinRecord",
    "ProteinSet",
    "ReadOptions",
    "ProteinPipeline",
    "build_denoiser",
    "likelihood",
    "load_preset",
    "read_dataset",
    "read_sequences",
    "sequence_likelihoods",
    "split_holdout",
    "train_denoiser",
    "write_fasta",
]
