"""Build a model, train it with diffcore's loop, validate it. Generation:
``difftext.pipeline.TextPipeline``.

Training a diffusion model is ``MaskProcess.loss`` (the MDLM ELBO) on blocks of tokens, or
``SubstitutionProcess.loss`` (cross-entropy of the clean tokens under uniform substitution) for
a model whose corruption is "substitution"; the autoregressive peer is trained by the same loop
on the same blocks. The masked ELBO bounds the likelihood of a masked model only: a
substitution model is not validated (judge its samples instead).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, PreTrainedTokenizerBase

from diffcore.io import WEIGHTS_NAME, load_weights
from diffcore.processes import MaskProcess
from diffcore.training import (
    LogRow,
    TrainConfig,
    dist_info,
    step_timing,
    steps_for_budget,
    train,
)
from difftext.autoregressive import causal_lm_loss
from difftext.data import Document, TokenBlocks, make_blocks, split_tail
from difftext.evaluate import Likelihood, causal_nll, diffusion_nll_bound, evaluate_samples
from difftext.model import (
    Corruption,
    ModelKind,
    TextModel,
    causal_lm_config,
    load_preset,
    load_text_model,
    masked_lm_config,
    save_text_model,
    seconds_per_bound_draw,
    set_dropout,
)
from difftext.tokenizer import start_id

__all__ = [
    "FitResult",
    "build_model",
    "calibrate_steps",
    "evaluation_report",
    "fit",
    "loss_function",
    "plan_validation",
    "score_documents",
    "validate",
]


def build_model(
    kind: ModelKind,
    tokenizer: PreTrainedTokenizerBase,
    block_size: int,
    *,
    preset: str = "small",
    init_from: str | os.PathLike | None = None,
    seed: int = 0,
    dropout: float | None = None,
    diffusion_block: int | None = None,
    corruption: Corruption = "mask",
    mask_range: tuple[float, float] = (0.0, 1.0),
) -> TextModel:
    """A fresh model (``from_config`` on the preset's shape; the autoregressive kind gets the
    GPT-2 peer of that shape), or, with ``init_from``, a model directory to keep training
    (continued pre-training: its own tokenizer is used and ``tokenizer`` is ignored).
    ``dropout``: the residual-stream dropout of a fresh model (None: the preset's, else 0;
    attention probabilities stay undropped, see ``set_dropout``); many passes over a small
    corpus need it (Tiny Shakespeare at 30 CPU minutes is ~36 epochs). ``diffusion_block``: a
    block-diffusion model (BD3-LM) with blocks of this many tokens, a divisor of ``block_size``;
    None: masked diffusion over the whole block (MDLM). ``corruption``: what a diffusion model
    learns to undo, "mask" or "substitution" (whole-sequence models only; with ``init_from``
    too: a masked model may go on as a substitution model, and back). ``mask_range``: train a
    masked model only on these masked shares, an expert (with ``init_from``: fine-tuned from a
    full model, continued pre-training)."""
    if diffusion_block is not None and (
        kind != "diffusion"
        or not isinstance(diffusion_block, int)
        or diffusion_block < 1
        or block_size % diffusion_block
    ):
        raise ValueError(
            f"diffusion_block must be a positive divisor of block_size {block_size} for a "
            f"diffusion model, got {diffusion_block!r} ({kind})"
        )
    if init_from is not None:
        loaded = load_text_model(init_from, kind=kind)
        limit = getattr(loaded.model.config, "max_position_embeddings", None) or getattr(
            loaded.model.config, "n_positions", block_size
        )
        if block_size > limit:
            raise ValueError(
                f"{init_from} handles at most {limit} positions; block_size {block_size} is longer"
            )
        if dropout is not None:
            # Some architectures copy p into plain attributes at construction (ModernBERT's
            # attention), so a built model cannot be re-regularised reliably.
            raise ValueError(
                f"dropout applies to fresh models; {init_from} keeps the dropout it was built with"
            )
        loaded.model.train()
        block = diffusion_block if diffusion_block is not None else loaded.diffusion_block
        return TextModel(
            loaded.model, loaded.tokenizer, kind, block_size, block, corruption, mask_range
        )
    torch.manual_seed(seed)  # weight initialization
    config = masked_lm_config(load_preset(preset), tokenizer, block_size)
    if dropout is not None:
        set_dropout(config, dropout)
    if kind == "diffusion":
        model = AutoModelForMaskedLM.from_config(config)
        return TextModel(
            model, tokenizer, kind, block_size, diffusion_block, corruption, mask_range
        )
    elif kind == "autoregressive":
        model = AutoModelForCausalLM.from_config(causal_lm_config(config, tokenizer, block_size))
    else:
        raise ValueError(f"kind must be 'diffusion' or 'autoregressive', got {kind!r}")
    return TextModel(
        model, tokenizer, kind, block_size, corruption=corruption, mask_range=mask_range
    )


def loss_function(
    text_model: TextModel, estimator: str = "count"
) -> Callable[[nn.Module, Tensor, torch.Generator], Tensor]:
    """``loss_fn(model, tokens (B, L), generator)`` for diffcore's loop: the MDLM ELBO in nats
    per token for a masked diffusion model (``estimator``: see ``MaskProcess``), the clean
    tokens' cross-entropy under substitution for a substitution model, the next-token NLL for
    the autoregressive peer. Padding is neither corrupted, counted nor attended to."""
    tok = text_model.tokenizer
    pad = tok.pad_token_id
    if text_model.kind == "autoregressive":
        start = start_id(tok)
        return lambda model, tokens, generator: causal_lm_loss(
            model, tokens, start=start, pad_id=pad
        )
    process = text_model.substitution
    if process is None:
        process = MaskProcess(
            text_model.mask_id,
            text_model.vocab_size,
            estimator=estimator,
            block=text_model.diffusion_block,
            mask_range=text_model.mask_range,
        )
    elif estimator != "count":
        raise ValueError(
            f"estimator {estimator!r} estimates the masked ELBO; a substitution model has one "
            "loss (leave estimator at 'count')"
        )
    base = text_model.denoiser()

    def diffusion_loss(model: nn.Module, tokens: Tensor, generator: torch.Generator) -> Tensor:
        counted = tokens != pad
        attention = None if bool(counted.all()) else counted.long()
        denoiser = dataclasses.replace(base, model=model)  # the (DDP-wrapped) module
        return process.loss(
            denoiser, tokens, generator, loss_mask=counted, attention_mask=attention
        )

    return diffusion_loss


def validate(
    text_model: TextModel, blocks: TokenBlocks, *, samples: int = 16, progress: bool = False
) -> Likelihood:
    """NLL on ``blocks``: the diffusion bound (``samples`` mask draws per block), or the exact
    NLL of the autoregressive peer. A substitution model has neither: ValueError."""
    was_training = text_model.model.training
    text_model.model.eval()
    try:
        if text_model.kind == "diffusion":
            return diffusion_nll_bound(text_model, blocks, samples=samples, progress=progress)
        return causal_nll(text_model, blocks, progress=progress)
    finally:
        text_model.model.train(was_training)


def score_documents(
    text_model: TextModel,
    documents: Sequence[Document],
    *,
    tail: float | None = None,
    max_blocks: int | None = None,
    samples: int = 16,
    progress: bool = True,
) -> Likelihood:
    """NLL of ``documents`` (only their last ``tail`` share of characters, at most
    ``max_blocks`` blocks of the model's length): see ``validate``."""
    documents = split_tail(documents, tail)[1] if tail else documents
    blocks = make_blocks(text_model.tokenizer, documents, text_model.block_size)
    blocks = blocks.subset(slice(0, max_blocks)) if max_blocks else blocks
    return validate(text_model, blocks, samples=samples, progress=progress)


def evaluation_report(
    model: TextModel | None,
    judge: TextModel | None,
    *,
    documents: Sequence[Document] = (),
    texts: Sequence[str] = (),
    reference: Sequence[Document] = (),
    **scoring: Any,
) -> dict[str, Any]:
    """``eval text``'s report: the model's NLL on ``documents`` (``score_documents`` with
    ``scoring``: tail, max_blocks, samples; none for a substitution model, which has no bound)
    and the scores of the sampled ``texts`` (``evaluate_samples``: under ``judge``, against
    the words of ``reference``)."""
    report: dict[str, Any] = {}
    if documents and model.substitution is not None:
        report["likelihood"] = "none: a substitution model has no likelihood bound"
    elif documents:
        report["likelihood"] = dataclasses.asdict(score_documents(model, documents, **scoring))
    if texts:
        tokenizer = (model or judge).tokenizer
        words = [d.text for d in reference]
        scores = evaluate_samples(texts, tokenizer, judge=judge, reference=words)
        report["samples"] = dataclasses.asdict(scores)
    return report


def plan_validation(
    text_model: TextModel,
    blocks: TokenBlocks,
    seconds: float,
    *,
    probe: int,
    max_draws: int,
    eval_blocks: int,
    eval_every: int,
) -> tuple[TokenBlocks, int, float, float]:
    """The validation that fits ``seconds``: (the final bound's blocks, its mask draws per block
    — fewer draws first, then fewer blocks —, the seconds it takes, and the seconds per
    training step that a bound of ``eval_blocks`` every ``eval_every`` steps adds), timed on
    ``probe`` blocks. A substitution model has no bound: (blocks, 0, 0, 0)."""
    if text_model.substitution is not None:
        return blocks, 0, 0.0, 0.0
    each = seconds_per_bound_draw(text_model, blocks, probe=probe)  # a block, a draw
    exact = text_model.kind == "autoregressive"  # one exact pass
    draws = 1 if exact else max(1, min(max_draws, int(seconds / (each * max(1, len(blocks))))))
    blocks = blocks.subset(slice(0, max(1, int(seconds / (each * draws)))))
    periodic = each * min(eval_blocks, len(blocks)) * 4 / eval_every if eval_every else 0.0
    return blocks, draws, each * draws * len(blocks), periodic


class _LoopModule(nn.Module):
    """The language model as diffcore's loop sees it: the same parameters, no ``config``.

    The loop saves a model whose ``config`` is a dataclass with ``diffcore.io.save_pretrained``,
    and transformers 5 configs are dataclasses that it cannot serialize (a ``torch.dtype``
    field); without one the loop writes the weights alone, and ``save_text_model`` writes the
    model directory."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, **inputs: Tensor):
        return self.lm(**inputs)


@dataclass(frozen=True)
class FitResult:
    """model_dir: the trained model (EMA weights), loadable by ``load_text_model``; log: the
    loop's rows; validation: (step, NLL) during training; final: NLL of the saved model on all
    validation blocks (None without validation blocks, and for a substitution model, which
    has no likelihood bound)."""

    model_dir: Path
    log: list[LogRow]
    validation: list[tuple[int, Likelihood]]
    final: Likelihood | None


def fit(
    text_model: TextModel,
    train_blocks: TokenBlocks,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    val_blocks: TokenBlocks | None = None,
    eval_every: int = 0,
    eval_blocks: int = 64,
    eval_samples: int = 4,
    final_samples: int = 16,
    estimator: str = "count",
    progress: bool = True,
    device: str | torch.device | None = None,
) -> FitResult:
    """Train with diffcore's loop in ``out_dir`` (checkpoints, exact resume, ``final/``), then
    write the model directory ``out_dir/model`` and ``out_dir/metrics.jsonl``. ``device``:
    where to train (default: where the model is).

    Every ``eval_every`` steps (0: never) the NLL of the first ``eval_blocks`` validation blocks
    is logged (``eval_samples`` mask draws each: a noisier, cheaper bound); at the end all
    validation blocks are scored with ``final_samples`` draws. ``estimator``: how the
    diffusion loss estimates the ELBO (see ``MaskProcess``). A substitution model is not
    validated (the masked ELBO is no bound of its likelihood): no validation rows, final None.

    Under torchrun rank 0 alone validates and writes ``model/`` and ``metrics.jsonl``; the
    other ranks return after training with no validation (``final`` None)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.jsonl"
    validation: list[tuple[int, Likelihood]] = []
    if text_model.substitution is not None:
        val_blocks = None

    def on_log(row: LogRow) -> None:
        record = {"step": row.step, "loss_nats": row.loss, "lr": row.lr}
        if val_blocks is not None and eval_every and row.step % eval_every == 0:
            subset = val_blocks.subset(slice(0, eval_blocks))
            nll = validate(text_model, subset, samples=eval_samples)
            validation.append((row.step, nll))
            record.update(
                val_bits_per_token=nll.bits_per_token, val_bits_per_char=nll.bits_per_char
            )
        with metrics.open("a") as f:
            f.write(json.dumps(record) + "\n")

    model = text_model.model
    model.train()
    loop_module = _LoopModule(model)
    result = train(
        loop_module,
        loss_function(text_model, estimator),
        train_blocks.tokens,
        config,
        out_dir=out,
        progress=progress,
        on_log=on_log,
        device=device or next(model.parameters()).device,
    )
    if not dist_info().is_main:
        return FitResult(out / "model", result.log, [], None)
    # the EMA average, when EMA is on
    load_weights(loop_module, result.final_model / WEIGHTS_NAME)
    model.eval()
    final = None
    if val_blocks is not None:
        final = validate(text_model, val_blocks, samples=final_samples, progress=progress)
        with metrics.open("a") as f:
            record = {"step": result.step, "final": True, **dataclasses.asdict(final)}
            f.write(json.dumps(record) + "\n")
    model_dir = save_text_model(text_model, out / "model")
    return FitResult(model_dir, result.log, validation, final)


def calibrate_steps(
    text_model: TextModel, blocks: TokenBlocks, config: TrainConfig, seconds: float
) -> int:
    """How many optimizer steps of ``config`` fit in ``seconds`` of wall clock, timed on a copy
    of the model: equal budgets for models of unequal speed (no reserve: the models compared
    pay the same overheads). With ``config.compile`` the compile time comes off the budget."""
    model = text_model.model
    loss_fn = loss_function(dataclasses.replace(text_model, block_size=0))
    device = next(model.parameters()).device
    timing = step_timing(model, loss_fn, blocks.tokens[: config.batch_size], config, device=device)
    return steps_for_budget(max(seconds - timing.startup, timing.step), timing.step, reserve=0.0)
