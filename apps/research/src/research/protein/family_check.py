"""Read a protein benchmark run's samples family by family, against the noise of natural sets.

For every sample file a benchmark run cached in OUT/samples: each family's composition
divergence (JSD, bits) and judge perplexity ratio, and the residues its samples over- and
under-use most. For every family, the JSD that natural sets of the same size already show: N
held-out sequences drawn at random, against the family's training sequences (median and 95th
percentile of --draws draws). A sample set far above that floor is off by more than chance.

    uv run python -m research.protein.family_check outputs/protein_bd4
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch

from diffcore.io import from_pretrained
from diffprotein import judges
from diffprotein.data import ReadOptions, read_fasta_records
from diffprotein.evaluate import (
    AMINO_ACIDS,
    composition,
    composition_divergence,
    evaluate_samples,
)
from research._utils import study_parser
from research.protein.benchmark import DATA, read_split


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument("run", type=Path, help="a protein benchmark --out folder")
    parser.add_argument("--data", default=str(DATA), help="the benchmark's family FASTA folder")
    parser.add_argument("--draws", type=int, default=200, help="natural sets per family")
    parser.add_argument(
        "--samples",
        type=Path,
        help="a folder of sample FASTA files, family=NAME in each header (default: RUN/samples)",
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)

    families, train, heldout = read_split(args.data)
    peer = from_pretrained(judges.ProteinLM, args.run / "peer" / "final", device="cpu")
    folder = args.samples or args.run / "samples"
    files = sorted(folder.glob("*.fasta"))
    if not files:
        raise SystemExit(f"{folder}: no cached sample files")

    print("| sample file | " + " | ".join(families) + " |")
    print("|---|" + "---:|" * len(families))
    sizes: dict[str, int] = {}
    shifts: list[str] = []
    for path in files:
        drawn = read_fasta_records(path, ReadOptions(family_field="family")).records
        rows = {
            r.family: r
            for r in evaluate_samples(
                drawn, train, heldout=heldout, judge=peer, top_k=0, max_pairs=0
            )
        }
        cells = [
            f"{rows[f].composition_jsd:.4f} / {rows[f].perplexity_ratio:.2f}x" for f in families
        ]
        print(f"| {path.stem} (JSD / ppl ratio) | " + " | ".join(cells) + " |")
        for f in families:
            sizes[f] = rows[f].n
            ref = composition([r.sequence for r in train if r.family == f])
            diff = composition([s.sequence for s in drawn if s.family == f]) - ref
            order = torch.argsort(diff, descending=True).tolist()
            shift = [f"{AMINO_ACIDS[i]}{float(diff[i]):+.3f}" for i in order[:3] + order[-3:]]
            shifts.append(f"| {path.stem} | {f} | " + " ".join(shift) + " |")

    print("\nResidues used most above and below the family's frequency\n")
    print("| sample file | family | three over, three under |\n|---|---|---|")
    print("\n".join(shifts))

    rng = random.Random(0)
    print(
        f"\nNatural sets: JSD of N held-out sequences to the family's training set, {args.draws}"
        " draws\n"
    )
    print("| family | N | median | 95th percentile |\n|---|---:|---:|---:|")
    for f in families:
        ref = [r.sequence for r in train if r.family == f]
        held = [r.sequence for r in heldout if r.family == f]
        n = min(sizes[f], len(held))
        values = sorted(composition_divergence(rng.sample(held, n), ref) for _ in range(args.draws))
        print(
            f"| {f} | {n} | {values[len(values) // 2]:.4f} | "
            f"{values[int(0.95 * len(values))]:.4f} |"
        )


if __name__ == "__main__":
    main()
