"""``diffuse train|sample|edit|eval protein``: protein sequences by masked (discrete) diffusion.

    diffuse train protein data/families --out runs/protein --preset small --steps 4000
    diffuse sample protein --model runs/protein -n 100 --family kunitz --out kunitz.fasta
    diffuse sample protein --model runs/protein -n 20 --family sh3 --length 48 \\
        --motif 8-12:ALYDY --out scaffolds.fasta
    diffuse edit protein input.fasta --model runs/protein --regions 10-20 --out edited.fasta
    diffuse eval protein kunitz.fasta --reference data/families --holdout 0.1

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
    "train": "Train a protein denoiser (ESM-style masked diffusion), its autoregressive peer "
    "(--model lm) or a family judge (--model classifier) on FASTA/A2M/A3M/Stockholm files or "
    "folders; the family of each record is its file name unless --family-field says otherwise.",
    "sample": "Sample sequences, optionally of a family, a length, and around a motif "
    "(--motif START-END:RESIDUES, 1-based, repeatable); writes FASTA with the settings in "
    "each header.",
    "edit": "Redesign parts of existing sequences (regions or a random share of positions), "
    "keeping the rest.",
    "eval": "Score sampled sequences: composition divergence, novelty, diversity, motif "
    "preservation, and with trained judges family accuracy and perplexity.",
}


def register(verbs: dict[str, Any]) -> None:
    train = verbs["train"].add_parser(
        "protein", help="train a protein model", description=DESCRIPTION["train"]
    )
    train.add_argument("data", nargs="+", help="sequence files or folders of them")
    train.add_argument("--out", required=True, help="run folder (checkpoints, final/, run.json)")
    train.add_argument("--model", choices=("denoiser", "lm", "classifier"), default="denoiser")
    train.add_argument("--preset", default="small", help="shape in shared/presets/protein.json")
    train.add_argument("--from-esm", help="continue from ESM-2 weights in this local folder")
    train.add_argument("--max-length", type=int, help="longest sequence (default: the preset's)")
    train.add_argument("--steps", type=int, default=2000)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--ema", type=float, default=0.999, help="EMA decay; 0 = no EMA")
    train.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    train.add_argument("--checkpoint-every", type=int, default=500)
    train.add_argument(
        "--length-window",
        type=int,
        default=0,
        help="batch sequences of similar length: sort windows of this many batches by length "
        "(0 = random batches; on the ten benchmark families, 50 cuts the tokens computed from "
        "2.4x the residues to 1.02x)",
    )
    train.add_argument(
        "--family-dropout", type=float, default=0.1, help="share trained without family (guidance)"
    )
    train.add_argument(
        "--family-balance", type=float, metavar="ALPHA",
        help="repeat small families' sequences so a family of n weighs about n**ALPHA "
        "(0: every family alike, 1: as in the data; default: as in the data)",
    )  # fmt: skip
    train.add_argument("--unconditional", action="store_true", help="ignore families")
    train.add_argument(
        "--diffusion-block",
        type=int,
        help="denoiser: block diffusion (BD3-LM) with blocks of this many residues, generated left "
        "to right (sample with --sampler confidence); default: the whole sequence at once",
    )
    train.add_argument("--background", nargs="*", default=(), help="classifier: 'other' proteins")
    train.add_argument("--holdout", type=float, default=0.1, help="share of each family held out")
    _reading_options(train)
    _common(train)
    train.set_defaults(run=_train)

    sample = verbs["sample"].add_parser(
        "protein", help="sample protein sequences", description=DESCRIPTION["sample"]
    )
    sample.add_argument("--model", required=True, help="a run folder or its final/ folder")
    sample.add_argument("--out", required=True, help="FASTA file to write")
    sample.add_argument("-n", "--num", type=int, default=10, help="sequences to sample")
    sample.add_argument("--family", help="family name (see the model's config.json)")
    sample.add_argument(
        "--length", type=int, help="residues per sequence (default: drawn from training lengths)"
    )
    sample.add_argument(
        "--motif", action="append", help="START-END:RESIDUES or START:RESIDUES, 1-based; repeatable"
    )
    _sampling_options(sample)
    sample.add_argument(
        "--best-of", type=int, default=1,
        help="draw this many candidates per sample and keep the one the model finds most likely "
        "(its NLL bound per residue): more typical, less novel sequences, at this many times "
        "the passes",
    )  # fmt: skip
    sample.set_defaults(run=_sample)

    edit = verbs["edit"].add_parser(
        "protein", help="redesign parts of sequences", description=DESCRIPTION["edit"]
    )
    edit.add_argument("input", help="sequence file to edit")
    edit.add_argument("--model", required=True)
    edit.add_argument("--out", required=True, help="FASTA file to write")
    where = edit.add_mutually_exclusive_group(required=True)
    where.add_argument("--regions", help="1-based ranges to regenerate, e.g. 10-20,40-45")
    where.add_argument("--fraction", type=float, help="regenerate this random share of positions")
    edit.add_argument("--family", help="condition on this family (default: each record's own)")
    _sampling_options(edit)
    edit.set_defaults(run=_edit)

    ev = verbs["eval"].add_parser(
        "protein", help="score sampled sequences", description=DESCRIPTION["eval"]
    )
    ev.add_argument("samples", help="FASTA written by `diffuse sample protein`")
    ev.add_argument(
        "--reference", nargs="+", required=True, help="the training data (files/folders)"
    )
    ev.add_argument(
        "--holdout", type=float, default=0.1, help="the held-out share used in training"
    )
    ev.add_argument(
        "--classifier", help="family judge run folder (`train protein --model classifier`)"
    )
    ev.add_argument("--judge", help="autoregressive judge run folder (`train protein --model lm`)")
    ev.add_argument("--top-k", type=int, default=64, help="3-mer candidates aligned per sample")
    ev.add_argument("--out", help="folder for metrics.json and table.md")
    _reading_options(ev)
    ev.add_argument("--device", default="auto")
    ev.set_defaults(run=_eval)


def _reading_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--family-field", help="header KEY of KEY=NAME (Stockholm: ID/AC) holding the family"
    )
    p.add_argument(
        "--inserts", choices=("keep", "drop"), default="keep", help="lowercase insert states"
    )
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise", help="bad records")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1...")


def _sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sampler", choices=("masked_ancestral", "confidence"),
        help="default: masked_ancestral, or confidence for a block-diffusion model (its only one)",
    )  # fmt: skip
    p.add_argument("--steps", type=int, help="network calls per batch (default: one per residue)")
    p.add_argument("--schedule", choices=("linear", "cosine"), default="linear")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument(
        "--top-p", type=float, help="nucleus sampling: draw from the top residues holding this mass"
    )
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale")
    p.add_argument(
        "--confidence", choices=("probability", "margin", "entropy"), default="probability",
        help="confidence sampler: rank positions by the drawn residue's probability (MaskGIT), "
        "or by the margin or entropy of the position's distribution (these keep draws exact)",
    )  # fmt: skip
    p.add_argument(
        "--confidence-noise", type=float, default=0.0,
        help="confidence sampler: MaskGIT's randomized reveal order (4.5 in MaskGIT; 0: none)",
    )  # fmt: skip
    p.add_argument(
        "--entropy-bound", type=float,
        help="confidence sampler: also reveal, most confident first, as many residues as keep "
        "the sum of their entropies minus the largest under this many nats (EB-sampler)",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=64)
    _common(p)


def _read(paths: list[str], args: argparse.Namespace, max_length: int | None = None) -> Any:
    from diffprotein.data import ReadOptions, read_sequences

    options = ReadOptions(
        family_field=args.family_field,
        inserts=args.inserts,
        max_length=max_length,
        on_error=args.on_error,
    )
    data = read_sequences(paths, options)
    if data.skipped:
        print(f"skipped records: {dict(data.skipped)}", file=sys.stderr)
    return data


def _model_dir(path: str) -> Path:
    folder = Path(path)
    return folder / "final" if (folder / "final" / "config.json").is_file() else folder


def _train(args: argparse.Namespace) -> int:
    import dataclasses

    from diffcore.training import TrainConfig
    from diffprotein import judges
    from diffprotein.conditioning import LengthPrior
    from diffprotein.data import balance_families, split_holdout
    from diffprotein.model import ProteinDenoiser, load_preset
    from diffprotein.pipeline import build_denoiser, train_denoiser

    try:
        shape = load_preset(args.preset)
        if args.from_esm:  # the checkpoint sets the shape; keep its full length unless told
            shape["max_length"] = 1022
        if args.max_length:
            shape["max_length"] = args.max_length
        data = _read(args.data, args, shape["max_length"])
        train_records, heldout = split_holdout(data.records, args.holdout)
        training = train_records
        if args.family_balance is not None:
            training = balance_families(train_records, args.family_balance)
        config = TrainConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            ema_decay=args.ema or None,
            precision=args.precision,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
            length_window=args.length_window,
        )
        families = () if args.unconditional else data.families
        if args.diffusion_block is not None and args.model != "denoiser":
            raise ValueError("--diffusion-block is for the denoiser (--model denoiser)")
        if args.model == "denoiser" and args.from_esm:
            lengths = LengthPrior.from_records((r.family, len(r.sequence)) for r in train_records)
            model = ProteinDenoiser.from_esm(
                args.from_esm,
                families=families,
                lengths=lengths.to_json(),
                max_length=shape["max_length"],
                diffusion_block=args.diffusion_block,
            )
        elif args.model == "denoiser":
            model = build_denoiser(
                train_records,
                shape,
                conditional=not args.unconditional,
                diffusion_block=args.diffusion_block,
            )
        elif args.model == "lm":
            model = judges.ProteinLM(judges.ProteinLMConfig(**shape, families=families))
        else:
            labels = judges.family_labels(data.families)
            model = judges.FamilyClassifier(judges.FamilyClassifierConfig(**shape, labels=labels))
    except (ValueError, FileNotFoundError) as err:
        return fail(str(err))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = {
        "command": sys.argv,
        "model": args.model,
        "model_config": dataclasses.asdict(model.config) | {"lengths": "see final/config.json"},
        "train_config": dataclasses.asdict(config),
        "data": args.data,
        "records": {"train": len(train_records), "heldout": len(heldout)},
        "family_balance": args.family_balance,
        "families": list(data.families),
        "seed": args.seed,
        "git_revision": git_revision(),
    }
    (out / "run.json").write_text(json.dumps(run, indent=2, default=str) + "\n")
    n_params = sum(p.numel() for p in model.parameters())
    balanced = f" ({len(training)} after balancing)" if training is not train_records else ""
    print(
        f"{args.model}: {n_params:,} parameters, {len(train_records)} training sequences{balanced}"
    )
    device = resolve_device(args.device)
    if args.model == "denoiser":
        result = train_denoiser(
            model, training, config, out, family_dropout=args.family_dropout, device=device
        )
    elif args.model == "lm":
        result = judges.train_lm(model, training, config, out, device=device)
    else:
        background = _read(args.background, args).records if args.background else ()
        result = judges.train_classifier(
            model, training, config, out, background=background, device=device
        )
    print(f"step {result.step}: loss {result.loss:.4f}; model in {result.final_model}")
    return 0


def _sampling_config(args: argparse.Namespace, model: Any) -> Any:
    from diffprotein.pipeline import SamplingConfig

    default = "confidence" if model.config.diffusion_block is not None else "masked_ancestral"
    return SamplingConfig(
        sampler=args.sampler or default,
        steps=args.steps,
        schedule=args.schedule,
        temperature=args.temperature,
        top_p=args.top_p,
        guidance=args.guidance,
        confidence=args.confidence,
        confidence_noise=args.confidence_noise,
        entropy_bound=args.entropy_bound,
        best_of=getattr(args, "best_of", 1),  # sample only: edit keeps one draw
        batch_size=args.batch_size,
    )


def _load_denoiser(path: str, device: str) -> Any:
    from diffcore.io import from_pretrained
    from diffprotein.model import ProteinDenoiser

    return from_pretrained(ProteinDenoiser, _model_dir(path), device=resolve_device(device))


def _write(samples: list[Any], out: str) -> None:
    from diffprotein.data import write_fasta

    path = write_fasta([(s.id, s.sequence, s.fields) for s in samples], out)
    print(f"wrote {len(samples)} sequences to {path}")


def _sample(args: argparse.Namespace) -> int:
    from diffprotein.conditioning import Motif
    from diffprotein.pipeline import sample

    try:
        model = _load_denoiser(args.model, args.device)
        motif = Motif.parse(args.motif) if args.motif else None
        samples = sample(
            model,
            args.num,
            family=args.family,
            length=args.length,
            motif=motif,
            config=_sampling_config(args, model),
            seed=args.seed,
        )
    except (ValueError, FileNotFoundError) as err:
        return fail(str(err))
    _write(samples, args.out)
    return 0


def _edit(args: argparse.Namespace) -> int:
    from diffprotein.data import ReadOptions, read_sequences
    from diffprotein.pipeline import redesign

    try:
        model = _load_denoiser(args.model, args.device)
        records = read_sequences(args.input, ReadOptions()).records
        samples = redesign(
            model,
            records,
            regions=args.regions,
            fraction=args.fraction,
            family=args.family,
            config=_sampling_config(args, model),
            seed=args.seed,
        )
    except (ValueError, FileNotFoundError) as err:
        return fail(str(err))
    _write(samples, args.out)
    return 0


def _eval(args: argparse.Namespace) -> int:
    import dataclasses

    from diffcore.io import from_pretrained
    from diffprotein import judges
    from diffprotein.conditioning import Motif
    from diffprotein.data import ReadOptions, parse_header, read_sequences, split_holdout
    from diffprotein.evaluate import evaluate_samples, format_scores

    try:
        samples = read_sequences(args.samples, ReadOptions(family_field="family")).records
        samples = [
            dataclasses.replace(s, family=None if s.family == "none" else s.family) for s in samples
        ]
        motifs = [
            Motif.parse(m) if (m := parse_header(s.description).get("motif")) else None
            for s in samples
        ]
        reference, heldout = split_holdout(_read(args.reference, args).records, args.holdout)
        device = resolve_device(args.device)
        classifier = judge = None
        if args.classifier:
            classifier = from_pretrained(
                judges.FamilyClassifier, _model_dir(args.classifier), device=device
            )
        if args.judge:
            judge = from_pretrained(judges.ProteinLM, _model_dir(args.judge), device=device)
        rows = evaluate_samples(
            samples,
            reference,
            heldout=heldout,
            motifs=motifs,
            classifier=classifier,
            judge=judge,
            top_k=args.top_k,
        )
    except (ValueError, FileNotFoundError) as err:
        return fail(str(err))
    table = format_scores(rows)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.md").write_text(table + "\n")
        metrics = [dataclasses.asdict(r) | {"perplexity_ratio": r.perplexity_ratio} for r in rows]
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return 0
