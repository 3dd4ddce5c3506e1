"""Protein sequence diffusion: FASTA in and out, ESM-style denoisers, families, motif scaffolding.

    from diffprotein import read_sequences, build_denoiser, train_denoiser, sample, Motif

Modules: ``alphabet`` (ESM-2 tokens, residue policy), ``data`` (FASTA/A2M/A3M/Stockholm/
datasets readers, FASTA writer, held-out split), ``conditioning`` (motifs, lengths, families),
``model`` (the ESM denoiser), ``pipeline`` (train, sample, redesign, likelihood,
sequence_likelihoods), ``judges`` (autoregressive peer, family classifier), ``evaluate``
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
from diffprotein.pipeline import (
    Sample,
    SamplingConfig,
    build_denoiser,
    likelihood,
    redesign,
    sample,
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
    "Sample",
    "SamplingConfig",
    "build_denoiser",
    "likelihood",
    "load_preset",
    "read_dataset",
    "read_sequences",
    "redesign",
    "sample",
    "sequence_likelihoods",
    "split_holdout",
    "train_denoiser",
    "write_fasta",
]
