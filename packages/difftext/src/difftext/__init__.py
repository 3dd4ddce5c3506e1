"""Masked-diffusion language models: tokenizers, transformers masked LMs, infilling, evaluation.

Text diffusion as MDLM and LLaDA do it: absorbing-state (masking) diffusion
(``diffcore.processes.MaskProcess``) with a bidirectional ``transformers`` masked LM as the
denoiser, trained by diffcore's loop and sampled by diffcore's discrete samplers; or, with
``build_model(..., corruption="substitution")``, uniform substitution (``SubstitutionProcess``:
wrong tokens instead of masks), sampled by refinement.

    from diffcore.training import TrainConfig
    from difftext import *

    docs = load_documents("input.txt")
    train_docs, val_docs = split_tail(docs, 0.1)
    tokenizer = train_char_tokenizer(d.text for d in train_docs)
    blocks = make_blocks(tokenizer, train_docs, 256)
    model = build_model("diffusion", tokenizer, 256, preset="small")
    fit(model, blocks, TrainConfig(steps=2000, batch_size=32), "runs/shakespeare")
    pipe = TextPipeline.from_pretrained("runs/shakespeare/model")
    texts = pipe.infill(["To be, or [MASK*20] to be"])
"""

from difftext.conditioning import Template, parse_template, prompt_guidance
from difftext.data import Document, TokenBlocks, load_documents, make_blocks, split_tail
from difftext.evaluate import (
    Likelihood,
    SampleReport,
    causal_nll,
    diffusion_nll_bound,
    evaluate_samples,
    generative_perplexity,
    unigram_entropy,
    word_share,
)
from difftext.model import (
    TextDenoiser,
    TextModel,
    causal_lm_config,
    load_preset,
    load_text_model,
    masked_lm_config,
    save_text_model,
)
from difftext.pipeline import TextPipeline
from difftext.tokenizer import (
    load_tokenizer,
    train_bpe_tokenizer,
    train_char_tokenizer,
    train_tokenizer,
)
from difftext.training import (
    FitResult,
    build_model,
    calibrate_steps,
    fit,
    loss_function,
    validate,
)

__all__ = [
    "Document",
    "FitResult",
    "Likelihood",
    "SampleReport",
    "Template",
    "TextDenoiser",
    "TextModel",
    "TextPipeline",
    "TokenBlocks",
    "build_model",
    "calibrate_steps",
    "causal_lm_config",
    "causal_nll",
    "diffusion_nll_bound",
    "evaluate_samples",
    "fit",
    "generative_perplexity",
    "load_documents",
    "load_preset",
    "load_text_model",
    "load_tokenizer",
    "loss_function",
    "make_blocks",
    "masked_lm_config",
    "parse_template",
    "prompt_guidance",
    "save_text_model",
    "split_tail",
    "train_bpe_tokenizer",
    "train_char_tokenizer",
    "train_tokenizer",
    "unigram_entropy",
    "validate",
    "word_share",
]
