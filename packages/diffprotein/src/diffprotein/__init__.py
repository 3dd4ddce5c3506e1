"""Protein sequence diffusion: FASTA in and out, ESM-style denoisers, families, motif scaffolding."""
