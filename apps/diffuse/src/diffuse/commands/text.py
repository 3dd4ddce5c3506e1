"""``diffuse train|sample|edit|eval text``: masked-diffusion language models.

    diffuse train text input.txt --out runs/text --preset small --steps 4000
    diffuse train text input.txt --out runs/text-ar --objective autoregressive --steps 4000
    diffuse sample text --model runs/text -n 8 --length 256 --steps 64 --out samples.jsonl
    diffuse sample text --model runs/text --prompt "ROMEO:" -n 4 --out romeo.jsonl
    diffuse edit text --model runs/text --text "To be, or [MASK*20] to be" --out infill.jsonl
    diffuse eval text --model runs/text --data input.txt --tail 0.1 \\
        --samples samples.jsonl --judge runs/text-ar --reference input.txt

Heavy packages are imported inside the handlers so ``diffuse --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diffuse.commands._shared import fail, git_revision, resolve_device

DESCRIPTION = {
    "train": "Train a masked-diffusion language model (a transformers masked LM, from a preset "
    "shape or continued from a local checkpoint with --init-from), or its GPT-2-style "
    "autoregressive peer (--objective autoregressive), on text files or tables with a text "
    "column. Without --val-data the last --val-fraction of the characters is held out.",
    "sample": "Generate texts, unprompted or continuing --prompt (a template: [MASK*n] marks n "
    "tokens to fill anywhere); writes one JSON object per line with `text` (and `prompt`).",
    "edit": "Fill the [MASK] / [MASK*n] spans of templates (infilling); everything else is kept "
    "verbatim.",
    "eval": "Report the model's NLL (diffusion: upper bound) in bits per token and per "
    "character on --data, and, for a samples file, generative perplexity under an "
    "autoregressive --judge, unigram entropy and the share of words found in --reference.",
}


def register(verbs: dict[str, Any]) -> None:
    train = verbs["train"].add_parser(
        "text", help="train a text model", description=DESCRIPTION["train"]
    )
    train.add_argument(
        "data", nargs="+", help="text files (.txt/.md), folders, .parquet/.jsonl/.csv tables"
    )
    train.add_argument(
        "--out", required=True, help="run folder (checkpoints, model/, metrics.jsonl, run.json)"
    )
    train.add_argument("--objective", choices=("diffusion", "autoregressive"), default="diffusion")
    train.add_argument(
        "--val-data", nargs="*", default=(), help="validation sources (default: the tail of data)"
    )
    train.add_argument(
        "--val-fraction", type=float, default=0.1, help="share of characters held out"
    )
    train.add_argument("--text-column", default="text", help="column of tables holding the text")
    train.add_argument("--sample-by", choices=("document", "paragraph", "line"), default="document")
    train.add_argument("--tokenizer", default="char", help="char, bpe, or a tokenizer folder")
    train.add_argument("--vocab-size", type=int, default=1024, help="bpe vocabulary size")
    train.add_argument("--block-size", type=int, default=256, help="tokens per training block")
    train.add_argument(
        "--packing",
        choices=("pad", "pack"),
        default="pad",
        help="short documents: pad, or pack with EOS",
    )
    train.add_argument("--preset", default="small", help="shape in shared/presets/text.json")
    train.add_argument(
        "--dropout",
        type=float,
        help="residual-stream dropout of a fresh model (default: the preset's, else 0; "
        "attention probabilities are not dropped); "
        "0.1-0.2 when training runs many epochs over a small corpus",
    )
    train.add_argument(
        "--diffusion-block",
        type=int,
        help="block diffusion (BD3-LM): autoregressive over blocks of this many tokens (a "
        "divisor of --block-size), masked diffusion within each; a tighter NLL bound, sampled "
        "block by block, infilling sees no text after the block it fills",
    )
    train.add_argument(
        "--init-from", help="a local model folder to continue training (its tokenizer is used)"
    )
    train.add_argument("--steps", type=int, default=2000)
    train.add_argument("--minutes", type=float, help="set --steps to fit this wall-clock budget")
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--warmup", type=float, default=0.05, help="share of steps warming up")
    train.add_argument(
        "--ema", type=float, help="EMA decay (default: 0.999, less for short runs); 0 = no EMA"
    )
    train.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    train.add_argument(
        "--compile", action="store_true",
        help="torch.compile the network for training (a ModernBERT CPU step: 0.63 -> 0.44 s "
        "after ~26 s of compiling; with --minutes the compile time comes off the budget)",
    )  # fmt: skip
    train.add_argument("--checkpoint-every", type=int, default=500)
    train.add_argument("--log-every", type=int, default=50)
    train.add_argument(
        "--eval-every", type=int, default=500, help="steps between validation bounds (0: end only)"
    )
    train.add_argument(
        "--eval-blocks", type=int, default=64, help="validation blocks scored during training"
    )
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run=_train)

    sample = verbs["sample"].add_parser(
        "text", help="generate text", description=DESCRIPTION["sample"]
    )
    sample.add_argument("--model", required=True, help="a run folder or its model/ folder")
    sample.add_argument("--out", default="samples.jsonl", help="JSONL file to write")
    sample.add_argument("-n", "--num", type=int, default=4, help="texts (per prompt, with prompts)")
    sample.add_argument("--prompt", action="append", default=[], help="prompt template; repeatable")
    sample.add_argument(
        "--length", type=int,
        help="tokens per text, prompt included (default: the block size; a block-diffusion "
        "model goes past it, block by block, each seeing the block size's worth before it)",
    )  # fmt: skip
    _sampling_options(sample)
    sample.set_defaults(run=_sample)

    edit = verbs["edit"].add_parser(
        "text", help="fill [MASK*n] spans", description=DESCRIPTION["edit"]
    )
    edit.add_argument("--model", required=True, help="a run folder or its model/ folder")
    edit.add_argument("--out", default="infills.jsonl", help="JSONL file to write")
    edit.add_argument(
        "--text", action="append", default=[], help="template, e.g. 'To be, or [MASK*20] to be'"
    )
    edit.add_argument(
        "--input", help="file of templates: one per line, or .jsonl with a `text` field"
    )
    edit.add_argument("-n", "--num", type=int, default=1, help="fills per template")
    _sampling_options(edit)
    edit.set_defaults(run=_edit)

    ev = verbs["eval"].add_parser(
        "text", help="score a model and its samples", description=DESCRIPTION["eval"]
    )
    ev.add_argument("--model", help="model to score on --data (a run folder or model/ folder)")
    ev.add_argument("--data", nargs="*", default=(), help="text to score the model on")
    ev.add_argument("--tail", type=float, help="score only this last share of --data's characters")
    ev.add_argument(
        "--mc-samples", type=int, default=16, help="mask draws per block (diffusion bound)"
    )
    ev.add_argument("--max-blocks", type=int, help="score at most this many blocks")
    ev.add_argument("--samples", help="JSONL written by `diffuse sample text`")
    ev.add_argument("--judge", help="autoregressive model judging generative perplexity")
    ev.add_argument("--reference", nargs="*", default=(), help="training text, for the word share")
    ev.add_argument("--out", help="JSON file for the report")
    ev.add_argument("--device", default="auto")
    ev.set_defaults(run=_eval)


def _sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=64, help="sampler steps (network calls at most)")
    p.add_argument("--sampler", choices=("confidence", "ancestral"), default="confidence")
    p.add_argument("--schedule", choices=("linear", "cosine"), default="linear")
    p.add_argument(
        "--threshold", type=float, help="confidence: also reveal tokens at least this sure"
    )
    p.add_argument(
        "--entropy-bound",
        type=float,
        help="confidence: also reveal, most confident first, as many tokens as keep the sum of "
        "their entropies minus the largest under this many nats (EB-sampler; use a fine grid)",
    )
    p.add_argument(
        "--semi-ar-block",
        type=int,
        help="confidence: semi-autoregressive blocks of this many tokens",
    )
    p.add_argument(
        "--confidence",
        choices=("probability", "margin", "entropy"),
        default="probability",
        help="confidence: rank positions by the drawn token's probability (MaskGIT), or by the "
        "margin or entropy of the position's distribution (these keep every draw exact)",
    )
    p.add_argument(
        "--confidence-noise",
        type=float,
        default=0.0,
        help="confidence: randomize the reveal order (MaskGIT's 4.5; fades to 0 by the end)",
    )
    p.add_argument(
        "--spacing",
        type=int,
        default=0,
        help="confidence: tokens revealed in one step lie more than this many positions apart",
    )
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, help="nucleus sampling")
    p.add_argument(
        "--guidance",
        type=float,
        default=1.0,
        help="classifier-free guidance on the prompt (1 = off)",
    )
    p.add_argument(
        "--no-reuse", action="store_true", help="call the network even when no token changed"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1...")


def _tokenizer(args: argparse.Namespace, train_docs: list, out: Path) -> Any:
    """Reuse the run's tokenizer when resuming; else train one or load the named folder."""
    from difftext.tokenizer import load_tokenizer, train_tokenizer

    saved = out / "tokenizer"
    if saved.is_dir():
        return load_tokenizer(saved)
    if args.tokenizer in ("char", "bpe"):
        tokenizer = train_tokenizer(args.tokenizer, [d.text for d in train_docs], args.vocab_size)
    else:
        tokenizer = load_tokenizer(args.tokenizer)
    tokenizer.save_pretrained(saved)
    return tokenizer


def _train(args: argparse.Namespace) -> int:
    import dataclasses

    from diffcore.training import TrainConfig
    from difftext.data import load_documents, make_blocks, split_tail
    from difftext.pipeline import build_model, calibrate_steps, default_ema_decay, fit

    out = Path(args.out)
    try:
        docs = load_documents(args.data, text_column=args.text_column, sample_by=args.sample_by)
        if args.val_data:
            train_docs = docs
            val_docs = load_documents(
                args.val_data, text_column=args.text_column, sample_by=args.sample_by
            )
        else:
            train_docs, val_docs = split_tail(docs, args.val_fraction)
        out.mkdir(parents=True, exist_ok=True)
        tokenizer = None if args.init_from else _tokenizer(args, train_docs, out)
        text_model = build_model(
            args.objective, tokenizer, args.block_size, preset=args.preset,
            init_from=args.init_from, seed=args.seed, dropout=args.dropout,
            diffusion_block=args.diffusion_block,
        )  # fmt: skip
        tokenizer = text_model.tokenizer
        train_blocks = make_blocks(tokenizer, train_docs, args.block_size, packing=args.packing)
        val_blocks = make_blocks(tokenizer, val_docs, args.block_size, packing=args.packing)
        config = TrainConfig(
            steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
            ema_decay=None, precision=args.precision, compile=args.compile,
            checkpoint_every=args.checkpoint_every, log_every=args.log_every, seed=args.seed,
        )  # fmt: skip
        run_file = out / "run.json"
        if args.minutes:
            previous = json.loads(run_file.read_text()) if run_file.is_file() else {}
            # a resumed run keeps its step count: a one-cycle schedule cannot be stretched
            steps = previous.get("train", {}).get("steps") or calibrate_steps(
                text_model, train_blocks, config, args.minutes * 60
            )
            config = dataclasses.replace(config, steps=steps)
        ema = default_ema_decay(config.steps) if args.ema is None else args.ema or None
        config = dataclasses.replace(config, ema_decay=ema)
        print(
            f"{len(train_blocks)} training and {len(val_blocks)} validation blocks of "
            f"{args.block_size} tokens; {len(tokenizer)} token types; {config.steps} steps",
            file=sys.stderr,
        )
        record = {
            "command": "train text",
            "arguments": {k: v for k, v in vars(args).items() if k != "run"},
            "train": dataclasses.asdict(config),
            "git_revision": git_revision(),
        }
        run_file.write_text(json.dumps(record, indent=2, default=str) + "\n")
        result = fit(
            text_model, train_blocks, config, out, val_blocks=val_blocks,
            eval_every=args.eval_every, eval_blocks=args.eval_blocks,
        )  # fmt: skip
    except (ValueError, FileNotFoundError, TypeError) as err:
        return fail(str(err))
    final = result.final
    kind = "bound" if final.bound else "exact"
    print(
        f"validation NLL ({kind}): {final.bits_per_token:.4f} bits/token, "
        f"{final.bits_per_char:.4f} bits/char; model in {result.model_dir}"
    )
    return 0


def _sample_config(args: argparse.Namespace, length: int | None) -> Any:
    from difftext.pipeline import SampleConfig

    return SampleConfig(
        length=length, steps=args.steps, sampler=args.sampler, schedule=args.schedule,
        threshold=args.threshold, entropy_bound=args.entropy_bound, block_size=args.semi_ar_block,
        confidence=args.confidence, confidence_noise=args.confidence_noise, spacing=args.spacing,
        temperature=args.temperature, top_p=args.top_p, guidance=args.guidance,
        reuse=not args.no_reuse, batch_size=args.batch_size,
    )  # fmt: skip


def _write(records: list[dict], path: str, args: argparse.Namespace, config: Any) -> None:
    import dataclasses

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    meta = {
        "model": str(args.model),
        "seed": args.seed,
        "sampling": dataclasses.asdict(config),
        "git_revision": git_revision(),
    }
    target.with_suffix(".run.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {len(records)} texts to {target}", file=sys.stderr)


def _generate(args: argparse.Namespace, templates: list[str], length: int | None) -> int:
    """Fill ``templates``; length: tokens per text (0: the model's block size; None: the
    templates' own lengths, for infilling)."""
    from difftext.model import load_text_model
    from difftext.pipeline import generate

    try:
        text_model = load_text_model(args.model, device=resolve_device(args.device))
        length = text_model.block_size if length == 0 else length
        too_long = length is not None and length > text_model.block_size
        if too_long and text_model.diffusion_block is None:
            raise ValueError(
                f"length {length} exceeds the model's block size {text_model.block_size} (a "
                "block-diffusion model, trained with --diffusion-block, generates any length)"
            )
        config = _sample_config(args, length)
        texts = generate(text_model, templates, config, seed=args.seed, progress=True)
    except (ValueError, FileNotFoundError, TypeError) as err:
        return fail(str(err))
    records = [g.record() for g in texts]
    _write(records, args.out, args, config)
    for r in records[:2]:
        print(r["text"])
        print("-" * 40)
    return 0


def _sample(args: argparse.Namespace) -> int:
    if args.num < 1:
        return fail(f"-n must be at least 1, got {args.num}")
    templates = [p for p in args.prompt for _ in range(args.num)] or [""] * args.num
    return _generate(args, templates, args.length or 0)


def _read_templates(path: str) -> list[str]:
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"template file {source} does not exist")
    lines = source.read_text(encoding="utf-8").splitlines()
    if source.suffix.lower() != ".jsonl":
        return [line for line in lines if line.strip()]
    templates = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            templates.append(json.loads(line)["text"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(
                f"{source}:{number}: expected a JSON object with a `text` field ({err})"
            ) from None
    return templates


def _edit(args: argparse.Namespace) -> int:
    try:
        templates = list(args.text) + (_read_templates(args.input) if args.input else [])
    except (ValueError, FileNotFoundError) as err:
        return fail(str(err))
    if not templates:
        return fail("give templates with --text or --input")
    return _generate(args, [t for t in templates for _ in range(args.num)], None)


def _eval(args: argparse.Namespace) -> int:
    import dataclasses

    from difftext.data import load_documents, make_blocks, split_tail
    from difftext.evaluate import evaluate_samples
    from difftext.model import load_text_model
    from difftext.pipeline import validate

    report: dict[str, Any] = {}
    try:
        device = resolve_device(args.device)
        model = load_text_model(args.model, device=device) if args.model else None
        if args.data:
            if model is None:
                raise ValueError("--data is scored by --model: give one")
            docs = load_documents(args.data)
            if args.tail:
                docs = split_tail(docs, args.tail)[1]
            blocks = make_blocks(model.tokenizer, docs, model.block_size)
            if args.max_blocks:
                blocks = blocks.subset(slice(0, args.max_blocks))
            nll = validate(model, blocks, samples=args.mc_samples, progress=True)
            report["likelihood"] = dataclasses.asdict(nll)
        if args.samples:
            texts = _read_samples(args.samples)
            judge = load_text_model(args.judge, device=device) if args.judge else None
            if judge is not None and judge.kind != "autoregressive":
                raise ValueError(f"--judge {args.judge} is not an autoregressive model")
            if model is None and judge is None:
                raise ValueError("--samples needs --model or --judge (for the tokenizer)")
            tokenizer = (model if model is not None else judge).tokenizer
            reference = [d.text for d in load_documents(args.reference)] if args.reference else ()
            report["samples"] = dataclasses.asdict(
                evaluate_samples(texts, tokenizer, judge=judge, reference=reference)
            )
        if not report:
            raise ValueError("nothing to evaluate: give --model with --data, and/or --samples")
    except (ValueError, FileNotFoundError, TypeError) as err:
        return fail(str(err))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


def _read_samples(path: str) -> list[str]:
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"samples file {source} does not exist")
    texts = []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                texts.append(json.loads(line)["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(
                    f"{source}:{number}: expected a JSON object with `text` ({err})"
                ) from None
    if not texts:
        raise ValueError(f"{source} holds no samples")
    return texts
