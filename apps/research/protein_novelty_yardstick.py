"""How novel are held-out natural sequences, and what perplexity do the novel ones get?

The protein targets ask for samples whose nearest training identity is low (median < 80 %) and
whose judge perplexity is within 1.3x of the held-out natural sequences'. This script asks the
same of the natural sequences themselves. Per family: the held-out sequences' nearest identity
to the family's training sequences, and the judge's perplexity on them grouped by that identity
(< 60 %, 60-80 %, >= 80 %), each as a ratio to the perplexity of the whole held-out set (the
benchmark's yardstick). With --samples, the cached sample files are grouped the same way, so a
family's samples can be compared with natural sequences as novel as they are.

    uv run python apps/research/protein_novelty_yardstick.py outputs/protein_bd4 \\
        --samples outputs/protein_bd4/samples/*ar_peer*.fasta \\
        outputs/protein_balance_long/arm1/samples/pilot.fasta
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from protein_benchmark import DATA, read_split

from diffcore.io import from_pretrained
from diffprotein import judges
from diffprotein.data import ProteinRecord, ReadOptions, read_fasta_records
from diffprotein.evaluate import IdentityIndex, median

BINS = ((0.0, 0.6, "< 60 %"), (0.6, 0.8, "60-80 %"), (0.8, 1.01, ">= 80 %"))


def grouped(
    peer: judges.ProteinLM,
    records: Sequence[ProteinRecord],
    nearest: Sequence[float],
    baseline: float,
) -> list[str]:
    """One cell per identity bin: the bin's perplexity as a ratio to ``baseline`` and its size."""
    cells = []
    for lo, hi, _ in BINS:
        members = [r for r, v in zip(records, nearest, strict=True) if lo <= v < hi]
        if members:
            cells.append(f"{judges.perplexity(peer, members) / baseline:.2f}x ({len(members)})")
        else:
            cells.append("- (0)")
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a protein benchmark --out folder (its peer)")
    parser.add_argument(
        "--samples", type=Path, nargs="*", default=[],
        help="sample FASTA files (family=NAME headers), each read as its own set",
    )  # fmt: skip
    parser.add_argument("--heldout", type=int, default=200, help="held-out sequences per family")
    parser.add_argument("--data", default=str(DATA), help="the benchmark's family FASTA folder")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)

    families, train, heldout = read_split(args.data)
    peer = from_pretrained(judges.ProteinLM, args.run / "peer" / "final", device="cpu")
    drawn = {
        path.stem: read_fasta_records(path, ReadOptions(family_field="family")).records
        for path in args.samples
    }
    bins = " | ".join(f"ppl ratio, identity {name} (n)" for *_, name in BINS)
    print(f"# {args.run} peer; {args.heldout} held-out sequences per family")
    print(f"\n| family | set | median nearest identity | {bins} |")
    print("|---|---|---:|" + "---:|" * len(BINS))
    for family in families:
        index = IdentityIndex.build([r.sequence for r in train if r.family == family])
        held = [r for r in heldout if r.family == family]
        baseline = judges.perplexity(peer, held)  # the benchmark's yardstick: every one
        chosen = random.Random(0).sample(held, min(args.heldout, len(held)))
        near = index.nearest([r.sequence for r in chosen])
        cells = grouped(peer, chosen, near, baseline)
        print(f"| {family} | held-out | {median(near):.2f} | " + " | ".join(cells) + " |")
        for name, records in drawn.items():
            mine = [r for r in records if r.family == family]
            if mine:
                near = index.nearest([r.sequence for r in mine])
                cells = grouped(peer, mine, near, baseline)
                print(f"| {family} | {name} | {median(near):.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
