"""Protein benchmark: family-conditioned sampling by masked diffusion against an autoregressive
peer of the same size and training budget, on the natural families of ../shared/data/proteins.

10% of each family is held out (``diffprotein.data.split_holdout``). Three models train on the
other 90%, through diffcore's loop: the diffusion denoiser and the autoregressive peer get the
same shape, batch, learning rate and number of steps (set so that the two, each timed on its own
loss, spend 80 % of the time budget), and a family judge (families + "other") gets the rest.
Then, per family: samples at lengths drawn from that family's training lengths, scored for
composition divergence, novelty, diversity, judge accuracy and judge perplexity (the AR peer's,
against held-out natural sequences), and motif scaffolds built on held-out sequences.
``--diffusion-block B`` makes the denoiser a block-diffusion model (blocks of B residues, left to
right; confidence samplers only); it keeps the peer's number of steps, each of which costs it
more (the clean residues ride along as context).

With ``--out``, a rerun continues where the last one stopped: training resumes from the newest
checkpoint (every 5 % of the steps) and each sampler row's samples are kept in
``OUT/samples/*.fasta``, so an interrupted run or one that adds sampler rows redoes nothing.

    uv run python -m research.protein.benchmark --minutes 60            # the benchmark
    uv run python -m research.protein.benchmark --minutes 0.5 --preset tiny \\
        --families kunitz,sh3 --samples 4                                # a smoke run
"""

from __future__ import annotations

import dataclasses
import math
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

import torch

from diffcore import training
from diffcore.generation import TokenOptions
from diffcore.io import WEIGHTS_NAME, from_pretrained, load_weights
from diffcore.processes.mask import linear_mask_grid
from diffcore.training import TrainConfig
from diffcore.training.data import BatchStream
from diffprotein import judges
from diffprotein.conditioning import Motif
from diffprotein.data import (
    ProteinRecord,
    ReadOptions,
    balance_families,
    read_fasta_records,
    read_sequences,
    split_holdout,
    write_fasta,
)
from diffprotein.evaluate import FamilyScores, evaluate_samples, format_scores
from diffprotein.model import load_preset
from diffprotein.pipeline import ProteinPipeline
from diffprotein.training import (
    DenoiserLoss,
    SequenceDataset,
    build_denoiser,
    collate,
    likelihood,
    train_denoiser,
)
from research._results import results_dir, write_results
from research._utils import SHARED_DATA, study_parser

DATA = SHARED_DATA / "proteins" / "families"
TARGETS = "judge accuracy >= 90%, JSD <= 0.02, median nearest identity < 0.80, ppl ratio <= 1.3"


def read_split(
    folder: str | Path, families: set[str] | None = None
) -> tuple[tuple[str, ...], list[ProteinRecord], list[ProteinRecord]]:
    """The benchmark's families, training and held-out sequences (10 % of each family) from a
    folder of family FASTA files (only ``families`` when given)."""
    paths = sorted(Path(folder).glob("*.fasta"))
    if families is not None:
        paths = [p for p in paths if p.stem in families]
    data = read_sequences(paths)
    train, heldout = split_holdout(data.records, 0.1)
    return data.families, train, heldout


def load_run_judges(run: Path) -> tuple[judges.ProteinLM, judges.FamilyClassifier]:
    """A finished run's AR peer (the perplexity judge) and family judge, on the CPU."""
    peer = from_pretrained(judges.ProteinLM, run / "peer" / "final", device="cpu")
    judge = from_pretrained(judges.FamilyClassifier, run / "judge" / "final", device="cpu")
    return peer, judge


def seconds_per_step(
    model, loss, records, config: TrainConfig, device: str, batches: int = 6
) -> float:
    """Mean time of one optimizer step of ``model`` on ``loss`` (forward, backward, AdamW) over
    the first ``batches`` batches the training stream will draw (their lengths vary when
    batches are grouped by length), plus a tenth for EMA, logging and data loading. Time each
    model on the loss it trains with: a block-diffusion denoiser's costs over twice the
    whole-sequence loss (it carries the clean residues along as context)."""
    data = SequenceDataset(records, model.config.families, model.config.max_length)
    stream = BatchStream(
        data,
        batch_size=config.batch_size,
        seed=config.seed,
        collate_fn=collate,
        length_window=config.length_window,
    )
    times = [
        training.seconds_per_step(model, loss, next(stream), config, device=device, trials=1)
        for _ in range(batches)
    ]
    return sum(times) / len(times) * 1.1


def cached_samples(path: Path, draw: Callable[[], list[ProteinRecord]]) -> list[ProteinRecord]:
    """Samples kept in ``path`` (FASTA, ``family=`` in each header) so that a rerun after an
    interruption, or one that adds sampler rows, skips the rows it has; else ``draw()`` them."""
    if path.is_file():
        return list(read_fasta_records(path, ReadOptions(family_field="family")).records)
    drawn = draw()
    write_fasta(((r.id, r.sequence, {"family": r.family}) for r in drawn), path)
    return drawn


def motif_tasks(heldout: list[ProteinRecord], per_family: int) -> list[tuple[str, int, Motif]]:
    """(family, length, motif) scaffolding problems: a 10-residue segment of held-out
    sequences (from a third of the way in), to be rebuilt around at the sequence's length."""
    tasks, seen = [], {}
    for r in heldout:
        if seen.get(r.family, 0) >= per_family or len(r.sequence) < 30:
            continue
        seen[r.family] = seen.get(r.family, 0) + 1
        start = len(r.sequence) // 3
        segment = r.sequence[start : start + 10]
        if "X" in segment:
            continue
        tasks.append((r.family, len(r.sequence), Motif.parse(f"{start + 1}:{segment}")))
    return tasks


class SamplerSetting(NamedTuple):
    """A ``--samplers`` entry as ``ProteinPipeline.sample``'s keywords (``keywords()``)."""

    sampler: str
    guidance: float
    options: dict[str, Any]  # the sampler's own: temperature, confidence_noise, confidence, top_p
    best_of: int

    def keywords(self) -> dict[str, Any]:
        return self._asdict()


def sampler_config(spec: str) -> SamplerSetting:
    """SAMPLER:TEMPERATURE:GUIDANCE[:NOISE[:RANKING[:TOP_P[:BEST_OF]]]] (empty fields:
    defaults). Only what differs from the sampler's defaults goes into the options (and so into
    the sample headers), the temperature always. Bad names or values fail here, before a run
    trains anything."""
    fields = spec.split(":")
    if not 3 <= len(fields) <= 7:
        raise ValueError(
            f"sampler spec {spec!r}: expected SAMPLER:TEMPERATURE:GUIDANCE[:NOISE[:RANKING"
            f"[:TOP_P[:BEST_OF]]]], got {len(fields)} fields"
        )
    name, temperature, scale, noise, ranking, top_p, best_of = fields + [""] * (7 - len(fields))
    try:
        options: dict[str, Any] = {"temperature": float(temperature)}
        if noise and float(noise) != 0.0:
            options["confidence_noise"] = float(noise)
        if ranking and ranking != "probability":
            options["confidence"] = ranking
        if top_p:
            options["top_p"] = float(top_p)
        setting = SamplerSetting(name, float(scale), options, int(best_of or 1))
        if setting.best_of < 1:
            raise ValueError(f"best_of must be a positive integer, got {setting.best_of}")
        _dry_run(TokenOptions(name, None, setting.guidance, None, options))
    except ValueError as error:
        raise ValueError(f"sampler spec {spec!r}: {error}") from None
    return setting


def _dry_run(plan: TokenOptions) -> None:
    """Run the sampler once on one masked token of a two-token model: the sampler checks its
    own option values (top_p in (0, 1], confidence_noise >= 0, ...)."""
    x = torch.zeros(1, 1, dtype=torch.long)  # token 0 is the mask
    plan.function(
        lambda x, t: torch.zeros(*x.shape, 2), x, linear_mask_grid(1), mask_id=0, **plan.options
    )


def per_family_checks(rows: list[FamilyScores]) -> str:
    """How many families meet each per-sample-set target, naming those that miss."""
    targets = [
        ("judge accuracy >= 90%", lambda r: r.judge_accuracy, lambda v: v >= 0.9, "{:.0%}"),
        ("composition JSD <= 0.02", lambda r: r.composition_jsd, lambda v: v <= 0.02, "{:.3f}"),
        ("median nearest identity < 80%", lambda r: r.novelty_median_identity,
         lambda v: v < 0.8, "{:.2f}"),
        ("judge perplexity <= 1.3x held-out", lambda r: r.perplexity_ratio,
         lambda v: v <= 1.3, "{:.2f}x"),
    ]  # fmt: skip
    parts = []
    for name, value, ok, fmt in targets:
        misses = [r for r in rows if not ok(value(r))]
        part = f"{name} in {len(rows) - len(misses)}/{len(rows)}"
        if misses:
            part += " (" + ", ".join(f"{r.family} {fmt.format(value(r))}" for r in misses) + ")"
        parts.append(part)
    return "; ".join(parts)


def sampler_label(setting: SamplerSetting) -> str:
    """A row name such as "confidence T=1 w=2 entropy top_p=0.8"."""
    options = setting.options
    return (
        f"{setting.sampler} T={options.get('temperature', 1.0):g} w={setting.guidance:g}"
        + (f" noise={options['confidence_noise']:g}" if options.get("confidence_noise") else "")
        + (f" {options['confidence']}" if "confidence" in options else "")
        + (f" top_p={options['top_p']:g}" if options.get("top_p") is not None else "")
        + (f" best_of={setting.best_of}" if setting.best_of > 1 else "")
    )


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget, all models")
    parser.add_argument("--data", default=str(DATA), help="folder of family FASTA files")
    parser.add_argument("--families", help="comma-separated subset (default: all)")
    parser.add_argument("--preset", default="small", help="shape of the denoiser and the peer")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--precision", default="auto", help="autocast: auto (fp32 CPU, bf16 CUDA), fp32, bf16"
    )
    parser.add_argument(
        "--length-window",
        type=int,
        default=50,
        help="sort windows of this many batches by length (0 = random batches, more padding)",
    )
    parser.add_argument("--samples", type=int, default=100, help="samples per family")
    parser.add_argument("--motifs", type=int, default=10, help="scaffolds per family")
    parser.add_argument(
        "--samplers",
        default="masked_ancestral:1.0:1.0,confidence:1.0:1.0",
        help="SAMPLER:TEMPERATURE:GUIDANCE[:NOISE[:RANKING[:TOP_P[:BEST_OF]]]],...; NOISE: the "
        "confidence sampler's MaskGIT order noise, RANKING its confidence measure (probability, "
        "margin, entropy), TOP_P the nucleus, BEST_OF the candidates per sample ranked by the "
        "denoiser's own likelihood; empty fields keep defaults; the first gives the per-family "
        "table and targets",
    )
    parser.add_argument(
        "--train-steps",
        type=int,
        help="steps of the denoiser and the peer (default: fit 40%% of --minutes each); with "
        "--out and the same steps, a second run reuses the trained models",
    )
    parser.add_argument(
        "--judge-steps", type=int, help="steps of the family judge (default: half --train-steps)"
    )
    parser.add_argument("--steps", type=int, help="sampler steps (default: one per residue)")
    parser.add_argument(
        "--diffusion-block",
        type=int,
        help="a block-diffusion denoiser with blocks of this many residues (confidence samplers "
        "only); default: the whole sequence at once",
    )
    parser.add_argument(
        "--family-balance",
        type=float,
        metavar="ALPHA",
        help="train the denoiser with small families repeated so a family of n weighs about "
        "n**ALPHA (diffprotein.data.balance_families); the peer and the judge keep the data's "
        "own mix, so they stay the same yardsticks",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="keep the trained models here (default: a temp folder)")
    parser.add_argument(
        "--results",
        help="folder for the scored samples (FASTA) and results.json (default: "
        "docs/results/protein)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        settings = [sampler_config(spec) for spec in args.samplers.split(",")]
    except ValueError as error:
        parser.error(str(error))
    if args.diffusion_block and any(c.sampler != "confidence" for c in settings):
        parser.error(
            "a block-diffusion denoiser samples with confidence samplers only (--samplers)"
        )
    sys.stdout.reconfigure(line_buffering=True)  # the tables interleave with progress bars

    shape = load_preset(args.preset)
    wanted = set(args.families.split(",")) if args.families else None
    families, train_set, heldout = read_split(args.data, wanted)
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="protein-bench-"))
    torch.manual_seed(args.seed)

    block = args.diffusion_block
    denoiser = build_denoiser(train_set, shape, diffusion_block=block)
    budget = args.minutes * 60
    base = TrainConfig(
        steps=1,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        precision=args.precision,
        length_window=args.length_window,
    )
    per_step = seconds_per_step(
        denoiser, DenoiserLoss.for_model(denoiser), train_set, base, args.device
    )
    timed_peer = judges.ProteinLM(judges.ProteinLMConfig(**shape, families=families))
    peer_step = seconds_per_step(timed_peer, judges.lm_loss, train_set, base, args.device)
    # the pair gets 80 % of the budget, the judge the rest
    steps = args.train_steps or max(20, int(0.8 * budget / (per_step + peer_step)))
    config = dataclasses.replace(
        base,
        steps=steps,
        ema_decay=0.999 if steps >= 2000 else None,
        checkpoint_every=max(steps // 20, 1),  # a long run loses at most 5 % when stopped
        log_every=max(steps // 20, 1),
    )
    torch.manual_seed(args.seed)
    denoiser = build_denoiser(train_set, shape, diffusion_block=block)  # fresh: timing trained it
    peer = judges.ProteinLM(judges.ProteinLMConfig(**shape, families=families))
    labels = judges.family_labels(families)
    classifier = judges.FamilyClassifier(judges.FamilyClassifierConfig(**shape, labels=labels))
    n_params = sum(p.numel() for p in denoiser.parameters())
    print(
        f"# protein benchmark, {date.today()}, {platform.processor() or platform.machine()}, "
        f"{args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        f"# {len(families)} families, {len(train_set)} train / {len(heldout)} held-out sequences; "
        f"preset {args.preset} ({n_params:,} parameters); {steps} steps x {args.batch_size} "
        f"for the denoiser and the AR peer ({per_step * 1000:.0f} and {peer_step * 1000:.0f} "
        f"ms/step measured, "
        f"{args.precision} autocast, length window {args.length_window})"
        + ("" if block is None else f"; block diffusion, blocks of {block} residues")
        + (
            ""
            if args.family_balance is None
            else f"; families balanced, alpha {args.family_balance:g}"
        )
    )
    projected = steps * (per_step + peer_step)  # the judge's share comes on top
    print(f"# projected training: {projected / 60:.0f} min for both models")
    # fixed steps were sized on another machine: say so now, not hours into the run; the pair's
    # share is 80 % of the budget, so warn past 25 % over that share, i.e. the whole budget
    if args.train_steps and projected > budget:
        print(
            f"warning: --train-steps {steps} at {(per_step + peer_step) * 1000:.0f} ms/step "
            f"for the two models needs about {projected / 60:.0f} min, past the --minutes "
            f"{args.minutes:g} budget (80 % of it is theirs); drop --train-steps to fit it",
            file=sys.stderr,
        )

    clock = {}
    t0 = time.perf_counter()
    recipe = "" if block is None else f"_block{block}"
    denoising = train_set
    if args.family_balance is not None:
        recipe += f"_balance{args.family_balance:g}"
        denoising = balance_families(train_set, args.family_balance)
    denoiser_dir = work / f"denoiser{recipe}"
    trained = train_denoiser(denoiser, denoising, config, denoiser_dir, device=args.device)
    # sample what `diffuse sample protein` loads: the EMA weights in final/, not the raw ones
    load_weights(denoiser, trained.final_model / WEIGHTS_NAME)
    clock["train diffusion"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    trained = judges.train_lm(peer, train_set, config, work / "peer", device=args.device)
    load_weights(peer, trained.final_model / WEIGHTS_NAME)
    clock["train AR peer"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    judge_steps = args.judge_steps or max(20, steps // 2)
    judge_config = dataclasses.replace(  # random batches: length groups are nearly one family
        base,
        steps=judge_steps,
        ema_decay=None,
        checkpoint_every=judge_steps,
        log_every=max(judge_steps // 20, 1),
        length_window=0,
    )
    judges.train_classifier(classifier, train_set, judge_config, work / "judge", device=args.device)
    clock["train judge"] = time.perf_counter() - t0
    held_labels = judges.classify(classifier, [r.sequence for r in heldout])
    judge_heldout = sum(p == r.family for p, r in zip(held_labels, heldout, strict=True))

    pipe = ProteinPipeline(denoiser, device=args.device)
    sampling = settings[0]
    kept = work / "samples"  # per training run (steps, EMA), sampler, count and seed
    trained_as = f"train{steps}" + ("_ema" if config.ema_decay is not None else "")
    trained_as += recipe
    variants: dict[str, list[ProteinRecord]] = {}
    for setting in settings:
        label = sampler_label(setting)

        def draw(setting: SamplerSetting = setting) -> list[ProteinRecord]:
            drawn_all: list[ProteinRecord] = []
            for i, family in enumerate(families):
                drawn = pipe.sample(
                    args.samples,
                    family=family,
                    steps=args.steps,
                    seed=args.seed + i,
                    **setting.keywords(),
                )
                drawn_all += [ProteinRecord(f"{family}_{s.id}", str(s.seq), family) for s in drawn]
            return drawn_all

        t0 = time.perf_counter()
        slug = "_".join(label.replace("=", "").split())
        stem = f"{trained_as}_{slug}_n{args.samples}_calls{args.steps or 'all'}_seed{args.seed}"
        variants[label] = cached_samples(kept / f"{stem}.fasta", draw)
        clock[f"sample {label}"] = time.perf_counter() - t0
    samples = next(iter(variants.values()))

    def draw_peer() -> list[ProteinRecord]:
        peer_samples: list[ProteinRecord] = []
        for i, family in enumerate(families):
            longest = max(len(r.sequence) for r in train_set if r.family == family)
            drawn = judges.generate(peer, args.samples, family=family, max_length=longest, seed=i)
            peer_samples += [
                ProteinRecord(f"{family}_ar{j}", s, family) for j, s in enumerate(drawn)
            ]
        return peer_samples

    t0 = time.perf_counter()
    peer_file = kept / f"{trained_as}_ar_peer_n{args.samples}_seed{args.seed}.fasta"
    peer_samples = cached_samples(peer_file, draw_peer)
    clock["sample AR peer"] = time.perf_counter() - t0

    scaffolds, motifs = [], []
    for j, (family, length, motif) in enumerate(motif_tasks(heldout, args.motifs)):
        (s,) = pipe.sample(
            1,
            family=family,
            length=length,
            motif=motif,
            steps=args.steps,
            seed=args.seed + j,
            **sampling.keywords(),
        )
        scaffolds.append(ProteinRecord(s.id, str(s.seq), family))
        motifs.append(motif)

    nll_subset = [r for f in families for r in [h for h in heldout if h.family == f][:100]]
    diffusion_nll = likelihood(denoiser, nll_subset, samples=8)
    peer_nll = math.log(judges.perplexity(peer, nll_subset))

    rows = evaluate_samples(samples, train_set, heldout=heldout, classifier=classifier, judge=peer)
    print("\n## Diffusion samples, per family\n")
    print(f"sampler: {next(iter(variants))}")
    print(format_scores(rows))
    peer_rows = evaluate_samples(
        peer_samples, train_set, heldout=heldout, classifier=classifier, judge=peer
    )
    print("\n## Samplers and the AR peer (same shape, data and steps), all families\n")
    compared = [dataclasses.replace(peer_rows[-1], family="AR peer")]
    for label, drawn in variants.items():
        row = evaluate_samples(drawn, train_set, heldout=heldout, classifier=classifier, judge=peer)
        compared.append(dataclasses.replace(row[-1], family=label))
    print(format_scores(compared))
    scaffold_rows = evaluate_samples(
        scaffolds, train_set, heldout=heldout, motifs=motifs, classifier=classifier, judge=peer
    )
    print("\n## Motif scaffolds (10 held-out residues kept, the rest generated)\n")
    print(format_scores(scaffold_rows[-1:]))

    overall = rows[-1]
    print("\n## Likelihood and targets\n")
    print(
        f"- held-out NLL, nats/residue: diffusion bound {diffusion_nll:.3f}, "
        f"AR peer {peer_nll:.3f} (on {len(nll_subset)} sequences)"
    )
    print(f"- judge accuracy on held-out natural sequences: {judge_heldout / len(heldout):.1%}")
    checks = [
        ("judge accuracy >= 90%", overall.judge_accuracy >= 0.9),
        ("composition JSD <= 0.02", overall.composition_jsd <= 0.02),
        ("median nearest identity < 80%", overall.novelty_median_identity < 0.8),
        ("judge perplexity <= 1.3x held-out", overall.perplexity_ratio <= 1.3),
        ("motifs preserved in 100%", scaffold_rows[-1].motif_preserved == 1.0),
    ]
    for name, ok in checks:
        print(f"- {name}: {'PASS' if ok else 'FAIL'}")
    # the "all" row averages the families; a target read per family is stricter
    print(f"- per family, {next(iter(variants))}: " + per_family_checks(rows[:-1]))
    print("- per family, AR peer: " + per_family_checks(peer_rows[:-1]))
    print("- time: " + ", ".join(f"{k} {v:.0f} s" for k, v in clock.items()))
    folder = results_dir("protein", args.results)
    scored = {"ar_peer.fasta": peer_samples, "motif_scaffolds.fasta": scaffolds}
    for i, drawn in enumerate(variants.values()):
        scored[f"diffusion_{i}.fasta"] = drawn
    for name, drawn in scored.items():  # family ids in every header, for any judge
        write_fasta(((r.id, r.sequence, {"family": r.family}) for r in drawn), folder / name)
    figures = {
        "per_family": [dataclasses.asdict(r) for r in rows],
        "compared": [dataclasses.asdict(r) for r in compared],
        "motif_scaffolds": dataclasses.asdict(scaffold_rows[-1]),
        "heldout_nll": {"diffusion_bound": diffusion_nll, "ar_peer": peer_nll},
        "checks": dict(checks),
        "samplers": {f"diffusion_{i}.fasta": label for i, label in enumerate(variants)},
    }
    path = write_results(
        folder,
        figures=figures,
        precision=args.precision,
        device=str(args.device or "cpu"),
        samples=sorted(scored),
        settings={"clock_seconds": clock, **vars(args)},
    )
    print(f"results: {path}")
    if not args.out:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
