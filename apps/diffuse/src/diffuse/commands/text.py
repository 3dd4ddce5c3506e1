"""``diffuse train|sample|edit|eval text``: diffusion language models (difftext), masked or
substitution (``--process``), e.g. ``diffuse edit text --model runs/text --text "To be, or
[MASK*20] to be" --out infill.jsonl``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diffuse import kit

DATA = "text files (.txt/.md), folders of them, or .parquet/.jsonl/.csv tables"
FINAL_DRAWS = 16  # mask draws per block of the final validation bound (fewer under --minutes)
PROCESS = "what a diffusion model undoes: masks, or wrong tokens (sampler: substitute)"
AUTOREGRESSIVE = (
    "an autoregressive model draws one token per pass, --sampler/--steps/--guidance/--option, "
    "expected none of them"
)
NO_BOUND = "no likelihood bound for a substitution model; judge its samples with eval text --judge"
HELP = {  # command: (its line in `diffuse <verb> --help`, --out)
    "train text": ("train a text model", "run folder: model/, checkpoints/, metrics.jsonl"),
    "sample text": ("generate texts, unprompted or after --prompt", "JSONL file of the texts"),
    "edit text": ("fill the [MASK*n] spans of templates", "JSONL file of the filled texts"),
    "eval text": ("NLL on --data, and scores of --samples", "JSON file of the report"),
}


def register(verbs: dict[str, Any]) -> None:
    add = kit.commands(verbs, HELP)
    train = add("train text", _train)
    a = kit.data_options(train, help=DATA, positional=True).add_argument
    a("--val-data", nargs="*", default=(), help="validation sources (default: the tail of data)")
    a("--val-fraction", type=kit.fraction, default=0.1, help="share of characters held out")
    a("--text-column", default="text", help="column of tables holding the text")
    a("--sample-by", choices=("document", "paragraph", "line"), default="document", help="unit")
    a("--tokenizer", default="char", help="char, bpe, or a tokenizer folder")
    a("--vocab-size", type=kit.positive_int, default=1024, help="bpe vocabulary size")
    a("--block-size", type=kit.positive_int, default=256, help="tokens per training block")
    a("--packing", choices=("pad", "pack"), default="pad", help="short documents: pad, or pack")
    a = kit.training_options(train, steps=2000, batch_size=32, lr=1e-3, token_experts=True)
    a = a.add_argument
    a("--objective", choices=("diffusion", "autoregressive"), default="diffusion", help="what")
    a("--process", choices=("mask", "substitution"), default="mask", help=PROCESS)
    a("--preset", default="small", help="shape in shared/presets/text.json")
    a("--dropout", type=kit.fraction, help="residual dropout of a fresh model (or the preset's)")
    a("--diffusion-block", type=kit.positive_int, help="block diffusion (BD3-LM): tokens a block")
    a("--init-from", help="a model folder to continue training (its tokenizer is used)")
    a("--warmup", type=kit.fraction, default=0.05, help="share of steps warming up")
    a("--compile", action="store_true", help="torch.compile the network (compiles once)")
    a("--log-every", type=kit.positive_int, default=50, help="steps between log rows")
    a("--eval-every", type=int, default=500, help="steps between validation bounds (0: end only)")
    a("--eval-blocks", type=kit.positive_int, default=64, help="validation blocks scored then")
    sample = add("sample text", _sample, out_default="samples.jsonl")
    _model_options(sample, n=4)
    a = kit.group(sample, "sampling").add_argument
    a("--prompt", action="append", default=[], help="prompt template (--n texts each); repeatable")
    a("--length", type=kit.positive_int, help="tokens per text (default: the block size)")
    edit = add("edit text", _edit, out_default="infills.jsonl")
    _model_options(edit, n=1)
    a = kit.group(edit, "data").add_argument
    a("--text", action="append", default=[], help="template, e.g. 'To be, or [MASK*20] to be'")
    a("--input", help="file of templates: one per line, or .jsonl with a `text` field")
    evaluate = add("eval text", _eval, out_required=False)
    a = kit.model_options(evaluate, required=False, help="model scored on --data").add_argument
    a("--judge", help="autoregressive model judging generative perplexity")
    a = kit.group(evaluate, "data").add_argument
    a("--data", nargs="*", default=(), help="text to score the model on")
    a("--tail", type=kit.share, help="score only this last share of --data's characters")
    a("--mc-samples", type=kit.positive_int, default=16, help="mask draws per block (the bound)")
    a("--max-blocks", type=kit.positive_int, help="score at most this many blocks")
    a("--samples", help="JSONL written by `diffuse sample text`")
    a("--reference", nargs="*", default=(), help="training text, for the word share")


def _model_options(parser: argparse.ArgumentParser, n: int) -> None:
    kit.model_options(parser, help="a text run or its model/", experts=True, stages=False)
    g = kit.sampling_options(parser, "token", "confidence", steps=64, guidance=1.0, batch_size=16)
    kit.token_sampler_options(g)
    kit.count_option(parser, default=n, help="texts (per prompt or template)")


def _train(args: argparse.Namespace) -> None:
    # (no grad_accum: calibrate_steps times whole optimizer steps, --grad-accum passes each)
    kit.check_corruption(args)
    budget, out = kit.Budget(args.minutes), Path(args.out)
    kit.check_input([*args.data, *args.val_data], "data", DATA)
    from difftext.data import load_splits, make_blocks
    from difftext.tokenizer import run_tokenizer
    from difftext.training import build_model, fit

    read = {"text_column": args.text_column, "sample_by": args.sample_by}
    docs = load_splits(args.data, args.val_data, val_fraction=args.val_fraction, **read)
    texts, vocab = [d.text for d in docs[0]], {"vocab_size": args.vocab_size}
    tokenizer = None if args.init_from else run_tokenizer(args.tokenizer, texts, out, **vocab)
    shape = {k: getattr(args, k) for k in ("preset", "dropout", "diffusion_block", "init_from")}
    shape |= {"corruption": args.process, "mask_range": args.noise_range}
    text_model = build_model(args.objective, tokenizer, args.block_size, seed=args.seed, **shape)
    tokenizer, size = text_model.tokenizer, args.block_size
    blocks = [make_blocks(tokenizer, d, size, packing=args.packing) for d in docs]
    options = {"warmup": args.warmup, "compile": args.compile, "log_every": args.log_every}
    options["device"] = kit.resolve_device(args.device)  # where the loop will train
    text_model.model.to(options["device"])  # (and where --minutes times it)
    steps, stop_at, val, draws = _plan(text_model, blocks, options, args, budget)
    config = kit.train_config(args, steps=steps, deadline=stop_at, **options)
    counts = f"{len(blocks[0])} training and {len(val)} validation blocks of {size} tokens"
    print(f"{counts}; {len(tokenizer)} token types; {config.steps} steps", file=sys.stderr)
    kit.write_run(out, args, train_config=config)
    evals = {k: getattr(args, k) for k in ("eval_every", "eval_blocks")}
    evals["device"] = options["device"]
    result = fit(text_model, blocks[0], config, out, val_blocks=val, final_samples=draws, **evals)
    if not kit.main_process():  # under torchrun rank 0 alone validates the model
        return
    f = result.final
    if f is None:  # a substitution model (train text always holds validation blocks)
        print(f"{NO_BOUND}; model: {result.model_dir}")
        return
    nll = f"{f.bits_per_token:.4f} bits/token, {f.bits_per_char:.4f} bits/char"
    print(f"validation NLL ({'bound' if f.bound else 'exact'}): {nll}; model: {result.model_dir}")


def _plan(text_model: Any, blocks: list, options: dict, args: argparse.Namespace, budget: Any):
    """(steps, the loop's deadline, validation blocks, final draws) that fit --minutes: the final
    validation bound gets at most a fifth of the budget (``plan_validation``)."""
    if not budget:
        return args.steps, None, blocks[1], FINAL_DRAWS
    from difftext.training import calibrate_steps, plan_validation

    evals = {k: getattr(args, k) for k in ("eval_blocks", "eval_every")}
    share = {"probe": args.batch_size, "max_draws": FINAL_DRAWS} | evals
    val, draws, final, evals = plan_validation(text_model, blocks[1], 12 * budget.minutes, **share)
    record = Path(args.out) / "run.json"  # a resumed run keeps its steps: one-cycle is fixed
    steps = record.is_file() and json.loads(record.read_text()).get("train_config", {}).get("steps")
    after = kit.SAVE_SECONDS + final
    left = budget.remaining() - after
    config = kit.train_config(args, **options)
    step = left / (steps or calibrate_steps(text_model, blocks[0], config, left)) + evals
    planned, stop_at = budget.plan(step, after=after)
    return steps or planned, stop_at, val, draws


def _save(texts: list[str], prompts: list[str], args: argparse.Namespace, pipe: Any) -> None:
    from difftext.data import write_jsonl

    pairs = enumerate(zip(texts, prompts, strict=True))
    records = [{"index": i, "text": t} | ({"prompt": p} if p else {}) for i, (t, p) in pairs]
    autoregressive = pipe.text_model.kind == "autoregressive"  # one token per pass
    sampling = {"sampler": "autoregressive"} if autoregressive else kit.sampling_record(args, pipe)
    kit.write_run(args.out, args, beside=True, sampling=sampling)
    print(f"wrote {len(texts)} texts to {write_jsonl(records, args.out)}", file=sys.stderr)
    for text in texts[:2]:
        print(f"{text}\n{'-' * 40}")


def _sample(args: argparse.Namespace) -> None:
    pipe = kit.open_pipeline(args, "text")
    prompts = [p for p in args.prompt for _ in range(args.n)] or [""] * args.n
    sampling = kit.sampling(args, pipe)
    if pipe.text_model.kind == "autoregressive":  # one token per pass: no sampler to choose
        if args.sampler or args.steps or args.guidance != 1.0 or args.sampler_option:
            raise kit.UsageError(AUTOREGRESSIVE)
        sampling = {k: sampling[k] for k in ("seed", "batch_size", "progress")}
    texts = pipe.sample(len(prompts), prompt=prompts, length=args.length, **sampling)
    _save(texts, prompts, args, pipe)


def _edit(args: argparse.Namespace) -> None:
    if not (args.text or args.input):
        raise kit.UsageError("no templates, --text, expected --text or --input")
    pipe = kit.open_pipeline(args, "text")
    from difftext.data import read_texts

    templates = list(args.text) + (read_texts(args.input) if args.input else [])
    templates = [t for t in templates for _ in range(args.n)]
    _save(pipe.infill(templates, **kit.sampling(args, pipe)), templates, args, pipe)


def _eval(args: argparse.Namespace) -> None:
    scoring = (args.data or args.samples) and (args.model or not args.data)
    if not scoring or args.samples and not (args.model or args.judge):
        raise kit.UsageError("nothing to score, --model, expected --model --data, or --samples")
    named = {k: getattr(args, k) for k in ("model", "judge")}
    folders = [v and kit.check_model_dir(v, "text", option=f"--{k}") for k, v in named.items()]
    from difftext.data import load_documents, read_texts
    from difftext.model import load_text_model
    from difftext.training import evaluation_report

    device = kit.resolve_device(args.device)
    model, judge = (f and load_text_model(f, device=device) for f in folders)
    samples = args.samples and kit.check_input(args.samples, "--samples", "JSONL")
    sources = {"documents": args.data and load_documents(args.data), "judge": judge or None}
    sources |= {"texts": samples and read_texts(samples, jsonl_only=True)}
    sources |= {"reference": load_documents(args.reference) if args.reference else ()}
    scoring = {"tail": args.tail, "max_blocks": args.max_blocks, "samples": args.mc_samples}
    report = evaluation_report(model, **sources, **scoring)
    print(text := json.dumps(report, indent=2))
    if args.out:
        kit.write_text(args.out, text + "\n")
