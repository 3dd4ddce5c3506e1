"""``diffuse train|sample|edit|eval protein``: protein sequences by masked diffusion, or by
substitution (wrong residues instead of masks, ``--process``), with diffprotein.

    diffuse train protein data/families --out runs/protein --preset small --steps 4000
    diffuse train protein data/families --out runs/blosum --process blosum --steps 4000
    diffuse sample protein --model runs/protein --n 100 --family kunitz --out kunitz.fasta
    diffuse sample protein --model runs/protein --n 20 --family sh3 --length 48 \\
        --motif 8-12:ALYDY --out scaffolds.fasta
    diffuse edit protein input.fasta --model runs/protein --regions 10-20 --out edited.fasta
    diffuse eval protein kunitz.fasta --reference data/families --holdout 0.1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diffuse import kit

DATA = "sequence files (FASTA, A2M, A3M, Stockholm) or folders of them"
OBJECTIVES = ("diffusion", "autoregressive", "classifier")  # the denoiser, the peer, the judge
PROCESSES = ("mask", "substitution", "blosum")  # diffprotein.corruption.CORRUPTIONS
SAMPLER = "sampler (default: masked_ancestral; blocks: confidence; substitution: substitute)"
PROCESS = "what the denoiser undoes: masks, or wrong residues, uniform or BLOSUM62-weighted"
CLASSIFIER = "family judge (train protein --objective classifier --out)"
HELP = {  # command: (its line in `diffuse <verb> --help`, --out)
    "train protein": ("train a denoiser, its peer or a family judge", "run folder: final/..."),
    "sample protein": ("sample sequences of a family, a length, a motif", "FASTA file to write"),
    "edit protein": ("redesign regions or a random share of sequences", "FASTA file to write"),
    "eval protein": ("composition, novelty, diversity, motifs, judges", "folder for the scores"),
}


def register(verbs: dict[str, Any]) -> None:
    add = kit.commands(verbs, HELP)
    train = add("train protein", _train)
    _data_options(kit.data_options(train, help=DATA, positional=True))
    a = kit.training_options(train, steps=2000, batch_size=32, lr=1e-3, token_experts=True)
    a = a.add_argument
    a("--objective", choices=OBJECTIVES, default="diffusion", help="what to train")
    a("--preset", default="small", help="shape in shared/presets/protein.json")
    a("--from-esm", help="diffusion: continue from ESM-2 weights in this folder")
    a("--max-length", type=kit.positive_int, help="longest sequence (default: the preset's)")
    a("--length-window", type=int, default=0, help="sort windows of this many batches by length")
    a("--family-dropout", type=kit.fraction, default=0.1, help="share trained without family")
    a("--family-balance", type=float, metavar="ALPHA", help="a family of n weighs n**ALPHA")
    a("--unconditional", action="store_true", help="ignore families")
    a("--diffusion-block", type=kit.positive_int, help="diffusion: residues per block (BD3-LM)")
    a("--process", choices=PROCESSES, default="mask", help=PROCESS)
    a("--background", nargs="*", default=(), help="classifier: 'other' proteins")
    a("--holdout", type=kit.fraction, default=0.1, help="share of each family held out")
    sample = add("sample protein", _sample)
    _model_options(sample, n=10)
    a = kit.group(sample, "sampling").add_argument
    a("--length", type=kit.positive_int, help="residues (default: drawn as in training)")
    a("--motif", action="append", help="START-END:RESIDUES, 1-based; repeatable")
    a("--best-of", type=kit.positive_int, default=1, help="keep the likeliest of this many")
    edit = add("edit protein", _edit)
    kit.group(edit, "data").add_argument("input", help="sequence file to edit")
    _model_options(edit)
    where = kit.group(edit, "sampling").add_mutually_exclusive_group(required=True)
    where.add_argument("--regions", help="1-based ranges to regenerate, e.g. 10-20,40-45")
    where.add_argument(
        "--fraction", type=kit.share, help="regenerate this random share of residues"
    )
    evaluate = add("eval protein", _eval, out_required=False)
    a = kit.group(evaluate, "data").add_argument
    a("samples", help="FASTA written by `diffuse sample protein`")
    a("--reference", nargs="+", required=True, help="the training data")
    a("--holdout", type=kit.fraction, default=0.1, help="the held-out share of training")
    _data_options(kit.group(evaluate, "data"))
    a = kit.model_options(evaluate, option="--classifier", required=False, help=CLASSIFIER)
    a = a.add_argument
    a("--judge", help="autoregressive peer (train protein --objective autoregressive --out)")
    a("--top-k", type=kit.positive_int, default=64, help="3-mer candidates aligned per sample")


def _data_options(g: Any) -> None:
    g.add_argument("--family-field", help="header KEY of KEY=NAME (Stockholm: ID/AC): the family")
    g.add_argument("--inserts", choices=("keep", "drop"), default="keep", help="lowercase inserts")
    g.add_argument("--on-error", choices=("raise", "skip"), default="raise", help="bad records")


def _model_options(parser: argparse.ArgumentParser, n: int | None = None) -> None:
    kit.model_options(parser, experts=True, stages=False)
    help = {"sampler_help": SAMPLER, "steps_help": "steps (default: one per residue)"}
    g = kit.sampling_options(parser, "token", None, steps=None, guidance=1.0, batch_size=64, **help)
    kit.token_sampler_options(g)
    g.add_argument("--family", help="family name (default for edit: each record's own)")
    if n is not None:
        kit.count_option(parser, default=n, help="sequences to sample")


def _read(paths: list[str], args: argparse.Namespace, max_length: int | None = None) -> Any:
    from diffprotein.data import ReadOptions, read_sequences

    options = {k: getattr(args, k) for k in ("family_field", "inserts", "on_error")}
    data = read_sequences(paths, ReadOptions(max_length=max_length, **options))
    if data.skipped:
        print(f"skipped records: {dict(data.skipped)}", file=sys.stderr)
    return data


def _train(args: argparse.Namespace) -> None:
    kit.check_corruption(args)
    budget = kit.Budget(args.minutes, grad_accum=args.grad_accum)
    kit.check_input(args.data, "data", DATA)
    from diffcore.training import TrainConfig
    from diffprotein import model as protein
    from diffprotein.data import balance_families, split_holdout
    from diffprotein.training import seconds_per_step

    shape = protein.training_shape(
        args.preset, from_esm=bool(args.from_esm), max_length=args.max_length
    )
    data = _read(args.data, args, shape["max_length"])
    records, heldout = split_holdout(data.records, args.holdout)
    alpha, families = args.family_balance, () if args.unconditional else data.families
    training = records if alpha is None else balance_families(records, alpha)
    extra = {"from_esm": args.from_esm, "diffusion_block": args.diffusion_block, "seed": args.seed}
    extra |= {"corruption": args.process, "mask_range": args.noise_range}
    model = protein.model_for_training(args.objective, records, shape, families=families, **extra)
    device, steps, stop_at = kit.resolve_device(args.device), args.steps, None
    if budget:  # (saving the model is all that follows training)
        timing = TrainConfig(steps=1, batch_size=args.batch_size, precision=args.precision)
        step = seconds_per_step(model, training, timing, device)
        steps, stop_at = budget.plan(step, after=kit.SAVE_SECONDS)
    config = kit.train_config(
        args, device=device, steps=steps, deadline=stop_at, length_window=args.length_window
    )
    facts = {"records": {"train": len(records), "heldout": len(heldout)}}
    facts |= {"families": list(data.families), "model_config": model.config}
    kit.write_run(args.out, args, train_config=config, **facts)
    balanced = f" ({len(training)} after balancing)" if training is not records else ""
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.objective}: {params:,} parameters, {len(records)} training sequences{balanced}")
    background = _read(args.background, args).records if args.background else ()
    extra = {"family_dropout": args.family_dropout, "background": background, "device": device}
    kit.print_result(protein.train_for_objective(model, training, config, args.out, **extra))


def _save(pipe: Any, records: list, args: argparse.Namespace) -> None:
    # the sampler settings the pipeline ran with: a --sampler left out is the model's default
    plan, _ = pipe.plan(kit.sampling(args))
    kit.write_run(args.out, args, beside=True, sampling=plan.record())
    print(f"wrote {len(records)} sequences to {pipe.save(records, args.out)}")


def _sample(args: argparse.Namespace) -> None:
    pipe = kit.open_pipeline(args, "protein")
    from diffprotein.conditioning import Motif

    motif = Motif.parse(args.motif) if args.motif else None
    where = {"family": args.family, "length": args.length, "motif": motif}
    records = pipe.sample(args.n, best_of=args.best_of, **where, **kit.sampling(args))
    _save(pipe, records, args)


def _edit(args: argparse.Namespace) -> None:
    pipe = kit.open_pipeline(args, "protein")
    from diffprotein.data import ReadOptions, read_sequences

    source = kit.check_input(args.input, "input", "a sequence file")
    records = read_sequences(source, ReadOptions()).records
    options = {"family": args.family} | kit.sampling(args)
    if args.regions:
        edited = pipe.infill(records, args.regions, **options)
    else:
        edited = pipe.edit(records, args.fraction, **options)
    _save(pipe, edited, args)


def _eval(args: argparse.Namespace) -> None:
    models = {k: getattr(args, k) for k in ("classifier", "judge") if getattr(args, k)}
    folders = {k: kit.check_model_dir(v, "protein", option=f"--{k}") for k, v in models.items()}
    import dataclasses

    from diffcore.io import from_pretrained
    from diffprotein import judges
    from diffprotein.data import read_samples, split_holdout
    from diffprotein.evaluate import evaluate_samples, format_scores

    samples, motifs = read_samples(kit.check_input(args.samples, "samples", "a FASTA file"))
    reference, heldout = split_holdout(_read(args.reference, args).records, args.holdout)
    classes = {"classifier": judges.FamilyClassifier, "judge": judges.ProteinLM}
    device = kit.resolve_device(args.device)
    loaded = {k: from_pretrained(classes[k], v, device=device) for k, v in folders.items()}
    options = {"heldout": heldout, "motifs": motifs, "top_k": args.top_k} | loaded
    rows = evaluate_samples(samples, reference, **options)
    print(table := format_scores(rows))
    if args.out:
        kit.write_text(Path(args.out) / "table.md", table + "\n")
        metrics = [dataclasses.asdict(r) | {"perplexity_ratio": r.perplexity_ratio} for r in rows]
        kit.write_text(Path(args.out) / "metrics.json", json.dumps(metrics, indent=2) + "\n")
