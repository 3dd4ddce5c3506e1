"""Does balancing families help the small ones? A pilot on a finished protein benchmark run.

Continues the run's denoiser (its EMA weights in DENOISER/final) for --steps more steps twice
from the same start, the same seed and the same schedule: once on the training sequences as
they are, once with small families repeated (``balance_families``, --alpha). Each arm is then
sampled with one sampler setting and scored per family like ``protein_sampler_screen.py``
(composition JSD and the peer's perplexity ratio; the run's peer and judge are reused). A
pilot, not the benchmark: it adds steps to a trained model and reads few samples per family.

    uv run python apps/research/protein_balance_pilot.py outputs/protein_bd4 \\
        --denoiser denoiser_block4 --steps 600 --alpha 0.5

Each arm's samples are written to OUT/armI/samples/pilot.fasta (I = 0 control, 1 balanced),
so ``protein_family_check.py RUN --samples OUT/armI/samples`` reads them family by family.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from protein_benchmark import DATA, load_run_judges, read_split, sampler_config, sampler_label

from diffcore.io import from_pretrained
from diffcore.training import TrainConfig
from diffprotein.data import ProteinRecord, balance_families, write_fasta
from diffprotein.evaluate import evaluate_samples
from diffprotein.model import ProteinDenoiser
from diffprotein.pipeline import train_denoiser
from diffprotein.sampling import sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a protein benchmark --out folder")
    parser.add_argument("--denoiser", default="denoiser", help="the denoiser's folder in the run")
    parser.add_argument("--steps", type=int, default=600, help="more steps per arm")
    parser.add_argument("--alpha", type=float, default=0.5, help="balance_families alpha")
    parser.add_argument("--lr", type=float, default=2e-4, help="peak of the one-cycle schedule")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sampler", default="confidence:1.0:2.0:0:entropy:0.8")
    parser.add_argument("--samples", type=int, default=10, help="per family")
    parser.add_argument("--data", default=str(DATA), help="the benchmark's family FASTA folder")
    parser.add_argument("--out", type=Path, help="arms' folders (default: RUN/balance_pilot)")
    parser.add_argument(
        "--arms", choices=["both", "balanced"], default="both",
        help="'balanced' skips the control arm (a longer continuation read on its own)",
    )  # fmt: skip
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)

    families, train, heldout = read_split(args.data)
    peer, judge = load_run_judges(args.run)
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, ema_decay=None,
        precision="fp32", checkpoint_every=max(args.steps // 4, 1), length_window=50,
    )  # fmt: skip
    setting = sampler_config(args.sampler)
    out = args.out or args.run / "balance_pilot"
    arms = [(0, "as in the data", train)] if args.arms == "both" else []
    arms.append((1, f"balanced, alpha {args.alpha:g}", balance_families(train, args.alpha)))

    header = " | ".join(families)
    print(f"# {args.run / args.denoiser}: +{args.steps} steps per arm, {sampler_label(setting)}, "
          f"{args.samples} samples per family; cells: JSD / ppl ratio\n")  # fmt: skip
    print(f"| arm | sequences | judge | JSD (all) | ppl ratio (all) | {header} |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(families))
    for i, name, records in arms:
        t0 = time.perf_counter()
        start = args.run / args.denoiser / "final"
        model = from_pretrained(ProteinDenoiser, start, device="cpu")
        train_denoiser(model, records, config, out / f"arm{i}", device="cpu")
        drawn: list[ProteinRecord] = []
        for j, family in enumerate(families):
            got = sample(model, args.samples, family=family, config=setting, seed=j, progress=False)
            drawn += [ProteinRecord(f"{family}_{s.id}", s.sequence, family) for s in got]
        # cached like a benchmark run's OUT/samples, so protein_family_check.py reads them
        write_fasta(
            ((r.id, r.sequence, {"family": r.family}) for r in drawn),
            out / f"arm{i}" / "samples" / "pilot.fasta",
        )
        *rows, overall = evaluate_samples(
            drawn, train, heldout=heldout, classifier=judge, judge=peer, top_k=0, max_pairs=0
        )
        cells = " | ".join(f"{r.composition_jsd:.3f} / {r.perplexity_ratio:.2f}" for r in rows)
        print(
            f"| {name} | {len(records)} | {overall.judge_accuracy:.1%} | "
            f"{overall.composition_jsd:.4f} | {overall.perplexity_ratio:.2f} | {cells} |"
        )
        print(f"  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
