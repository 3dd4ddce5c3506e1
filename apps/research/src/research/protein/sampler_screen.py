"""Screen protein sampler settings on the models a protein benchmark run left in its --out folder.

Per setting: N samples per family (seed = family index, as in the benchmark), scored on what
separates samplers fastest, as the benchmark's "all" row scores them (each family against
itself): judge accuracy (and the worst three families), composition divergence (and the worst
family), and the AR peer's perplexity against held-out natural sequences (and the worst
family's). With ``--novelty`` also the median nearest identity to training (and the most
conserved family's), the target that sharper settings push up. No diversity alignments,
scaffolds or likelihood: a screen picks the rows worth a full run.

    uv run python -m research.protein.sampler_screen outputs/protein_long \\
        confidence:1.0:2.0:0:entropy confidence:1.0:2.0:0:entropy:0.8 --samples 10
    uv run python -m research.protein.sampler_screen outputs/protein_bd4 \\
        confidence:1.0:2.0:0:entropy:0.8 --denoiser denoiser_block4
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from diffprotein.data import ProteinRecord
from diffprotein.evaluate import FamilyScores, evaluate_samples
from diffprotein.pipeline import ProteinPipeline
from research._utils import study_parser
from research.protein.benchmark import (
    DATA,
    load_run_judges,
    read_split,
    sampler_config,
    sampler_label,
)


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument("run", type=Path, help="a protein benchmark --out folder")
    parser.add_argument(
        "samplers",
        nargs="+",
        help="SAMPLER:TEMPERATURE:GUIDANCE[:NOISE[:RANKING[:TOP_P[:BEST_OF]]]]",
    )
    parser.add_argument("--samples", type=int, default=10, help="per family")
    parser.add_argument("--data", default=str(DATA), help="the benchmark's family FASTA folder")
    parser.add_argument(
        "--novelty",
        action="store_true",
        help="also align samples to training for the median nearest identity (slower)",
    )
    parser.add_argument(
        "--denoiser",
        default="denoiser",
        help="the denoiser's folder in the run (a --diffusion-block B run: denoiser_blockB)",
    )
    args = parser.parse_args()
    try:
        settings = [sampler_config(spec) for spec in args.samplers]
    except ValueError as error:
        parser.error(str(error))
    sys.stdout.reconfigure(line_buffering=True)

    families, train, heldout = read_split(args.data)
    pipe = ProteinPipeline.from_pretrained(args.run / args.denoiser / "final", device="cpu")
    peer, judge = load_run_judges(args.run)
    print(f"# {args.run}: {args.samples} samples per family\n")
    novelty = " | median nearest identity | most conserved family |" if args.novelty else " |"
    print(
        "| sampler | judge accuracy | worst families (judge) | composition JSD | worst family JSD "
        "| ppl ratio | worst family ppl ratio | s" + novelty
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if args.novelty else ""))
    for setting in settings:
        t0 = time.perf_counter()
        drawn: list[ProteinRecord] = []
        for i, family in enumerate(families):
            out = pipe.sample(args.samples, family=family, seed=i, **setting.keywords())
            drawn += [ProteinRecord(f"{family}_{s.id}", str(s.seq), family) for s in out]
        rows = evaluate_samples(
            drawn,
            train,
            heldout=heldout,
            classifier=judge,
            judge=peer,
            top_k=64 if args.novelty else 0,
            max_pairs=0,
        )
        *by_family, overall = rows
        worst = sorted(by_family, key=lambda r: r.judge_accuracy)[:3]
        worst_jsd = max(by_family, key=lambda r: r.composition_jsd)
        worst_ppl = max(by_family, key=lambda r: r.perplexity_ratio)
        print(
            f"| {sampler_label(setting)} | {overall.judge_accuracy:.1%} | "
            + ", ".join(f"{r.family} {r.judge_accuracy:.0%}" for r in worst)
            + f" | {overall.composition_jsd:.4f} | {worst_jsd.family} "
            f"{worst_jsd.composition_jsd:.3f} | {overall.perplexity_ratio:.2f} | "
            f"{worst_ppl.family} {worst_ppl.perplexity_ratio:.2f} | {time.perf_counter() - t0:.0f} |"
            + (_novelty(overall, by_family) if args.novelty else "")
        )


def _novelty(overall: FamilyScores, by_family: list[FamilyScores]) -> str:
    top = max(by_family, key=lambda r: r.novelty_median_identity)
    return (
        f" {overall.novelty_median_identity:.3f} | {top.family} {top.novelty_median_identity:.3f} |"
    )


if __name__ == "__main__":
    main()
