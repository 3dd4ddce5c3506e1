"""How much does keeping the likeliest of K candidates buy, family by family? A pilot on a
finished protein benchmark run.

Per family: N x K samples with one sampler setting (seed = family index), each scored by the
denoiser's own bound on its NLL per residue (``sequence_likelihoods``, 4 mask draws, as
``SamplingConfig.best_of`` ranks). Consecutive groups of K are one sample's candidates; from
the same draws, "best of k" keeps the likeliest of each group's first k (k = 1 is plain
sampling). Each selection is scored per family like the benchmark: judge accuracy,
composition JSD, median nearest identity to training, diversity (mean pairwise identity, 500
pairs) and the peer's perplexity ratio to held-out natural sequences. Unlike ``best_of``, a
group's candidates here have their own lengths (each drawn from the family's lengths).

    uv run python apps/research/protein_best_of_pilot.py outputs/protein_bd4 \\
        --denoiser ../protein_balance_long2/arm1 --best-of 4 --samples 30
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from protein_benchmark import DATA, load_run_judges, read_split, sampler_config, sampler_label

from diffcore.io import from_pretrained
from diffprotein.data import ProteinRecord
from diffprotein.evaluate import evaluate_samples
from diffprotein.model import ProteinDenoiser
from diffprotein.pipeline import sample, sequence_likelihoods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a protein benchmark --out folder")
    parser.add_argument(
        "--denoiser", default="denoiser",
        help="the denoiser's folder, relative to the run (its weights in DENOISER/final)",
    )  # fmt: skip
    parser.add_argument("--sampler", default="confidence:1.0:2.0:0:entropy:0.8")
    parser.add_argument("--best-of", type=int, default=4, help="candidates per sample (K)")
    parser.add_argument("--samples", type=int, default=30, help="per family (N)")
    parser.add_argument("--data", default=str(DATA), help="the benchmark's family FASTA folder")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)

    families, train, heldout = read_split(args.data)
    peer, judge = load_run_judges(args.run)
    model = from_pretrained(ProteinDenoiser, args.run / args.denoiser / "final", device="cpu")
    setting = sampler_config(args.sampler)
    k_max, n = args.best_of, args.samples
    picks: dict[int, list[ProteinRecord]] = {k: [] for k in sorted({1, 2, k_max})}
    t0 = time.perf_counter()
    for j, family in enumerate(families):
        drawn = sample(model, n * k_max, family=family, config=setting, seed=j, progress=False)
        records = [ProteinRecord(f"{family}_{s.id}", s.sequence, family) for s in drawn]
        nll = sequence_likelihoods(model, records, samples=4)
        for i in range(n):
            for k, kept in picks.items():
                group = range(i * k_max, i * k_max + k)
                kept.append(records[min(group, key=nll.__getitem__)])
    seconds = time.perf_counter() - t0
    print(f"# {args.run / args.denoiser}: {sampler_label(setting)}, {n} samples per family, "
          f"{k_max} candidates each, drawn and scored in {seconds:.0f} s\n")  # fmt: skip
    for k, kept in picks.items():
        rows = evaluate_samples(
            kept, train, heldout=heldout, classifier=judge, judge=peer, max_pairs=500
        )
        print(f"\n## best of {k}\n")
        print("| family | judge | JSD | median nearest identity | mean pairwise identity "
              "| ppl ratio | misses |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---|")
        for r in rows:
            misses = [
                name
                for name, ok in [
                    ("judge", r.judge_accuracy >= 0.9),
                    ("JSD", r.composition_jsd <= 0.02),
                    ("identity", r.novelty_median_identity < 0.8),
                    ("ppl", r.perplexity_ratio <= 1.3),
                ]
                if not ok
            ]
            print(
                f"| {r.family} | {r.judge_accuracy:.0%} | {r.composition_jsd:.4f} | "
                f"{r.novelty_median_identity:.3f} | {r.diversity_mean_identity:.3f} | "
                f"{r.perplexity_ratio:.2f} | {', '.join(misses)} |"
            )


if __name__ == "__main__":
    main()
