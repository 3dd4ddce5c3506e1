"""Masked-diffusion language models: tokenizers, transformers masked LMs, infilling, evaluation."""
