"""Refiners at equal training compute (issue #35, study a): a base model sampled at few steps,
the same plus a refiner, and the base at twice the steps.

Arms, all trained on the embedded Fashion-MNIST subset (or ``--data``) with the same preset and
batch, and the same total optimiser steps S:
- base S: the Gaussian model trained S steps, sampled at ``--base-steps`` and at twice that;
- base S - R + refiner R: a base trained S - R steps, sampled at ``--base-steps``, then refined
  by a refiner trained R more steps from that base's weights on the low noise levels only
  (``--noise-range 0,HI``: an expert for the end of the walk) at ``--refine-steps``; and the
  same base refined by a restorer trained R steps from scratch on a crappification.
Every arm draws ``--n`` class-conditional samples (ten classes in turn) scored by one image
judge trained here: FID on its features against the training images, and its agreement with
the class asked for. Network calls per sample are counted (refinement: the steps it runs).
Writes ``results.json``, ``table.md`` and each arm's first 100 samples as a PNG grid to
``docs/results/image/refiner/``.

    uv run python -m research.image.refiner
    uv run python -m research.image.refiner --total-steps 40 --refiner-steps 10 --n 20 --results /tmp/r
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from diffuse import demo_data
from diffuse.demo_run import run_command
from research._results import RESULTS, results_dir, write_results
from research._utils import study_parser, train_fresh


def score(judge: Any, reference: torch.Tensor, images: torch.Tensor, labels: torch.Tensor):
    from diffimage import score_samples

    r = score_samples(judge, images, reference, labels=labels)
    return {"FID": round(r.fid, 2), "judge accuracy": round(r.accuracy, 4)}


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument("--data", help="image data (default: the embedded Fashion-MNIST subset)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--total-steps", type=int, default=500, help="S: each arm's total")
    parser.add_argument("--refiner-steps", type=int, default=100, help="R: the refiner's share")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--judge-steps", type=int, default=300)
    parser.add_argument("--base-steps", type=int, default=10, help="the base's sampler steps")
    parser.add_argument("--refine-steps", type=int, default=10, help="refiner grid steps")
    parser.add_argument("--strength", type=float, default=0.3, help="share of refiner steps run")
    parser.add_argument("--expert-range", type=float, default=0.4, help="HI of the expert")
    parser.add_argument("--restorer", default="blur:2+noise:0.3", help="crappification spec")
    parser.add_argument("--n", type=int, default=500, help="samples per arm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="outputs/refiner")
    parser.add_argument("--results", default=RESULTS / "image" / "refiner")
    args = parser.parse_args()
    data = args.data or str(demo_data.path("image"))
    work, out = Path(args.work), results_dir("image", args.results)
    s, r = args.total_steps, args.refiner_steps

    judge_dir = work / "judge"
    if not (judge_dir / "final").is_dir():
        run_command(
            *("train", "image-judge", "--data", data, "--batch-size", "64"),
            *("--test-split", "train", "--steps", str(args.judge_steps), "--out", str(judge_dir)),
        )
    full = train_fresh("image", data, work / "base_full", s, args)
    short = train_fresh("image", data, work / "base_short", s - r, args)
    expert_range = f"0,{args.expert_range}"
    expert = train_fresh(
        "image", data, work / "expert", r, args, "--init", str(short), "--noise-range", expert_range
    )
    restorer = train_fresh("image", data, work / "restorer", r, args, "--process", args.restorer)

    from diffimage import ImagePipeline, judge_features, load_images, load_judge, save_grid
    from diffimage.refine import refine

    judge = load_judge(judge_dir / "final")
    reference = judge_features(judge, load_images(data, split="train").images)
    labels = torch.arange(args.n) % 10
    common = {"labels": labels, "seed": args.seed + 1, "guidance": 2.0, "progress": True}
    base = {"sampler": "dpmpp_2m", "steps": args.base_steps}
    refined = {"steps": args.refine_steps}
    rows, grids = [], {}

    def arm(name: str, images: torch.Tensor, calls: int, trained: str) -> None:
        rows.append(
            {"arm": name, "training": trained, "calls": calls}
            | score(judge, reference, images, labels)
        )
        grids[name] = images[:100]
        print(rows[-1], flush=True)

    pipe = ImagePipeline.from_pretrained(full)
    arm(f"base {s}", pipe.sample(args.n, **base, **common), args.base_steps, f"{s}")
    twice = {**base, "steps": 2 * args.base_steps}
    arm(f"base {s}, 2x steps", pipe.sample(args.n, **twice, **common), 2 * args.base_steps, f"{s}")
    short_pipe = ImagePipeline.from_pretrained(short)
    drafts = short_pipe.sample(args.n, **base, **common)
    arm(f"base {s - r}", drafts, args.base_steps, f"{s - r}")
    run = max(1, round(args.strength * args.refine_steps))
    # the expert serves the levels it learned, the short base (same weights, its range cut to
    # the rest) the levels above: refinement at a strength past the expert's range stays right
    upper = short_pipe.model
    upper.config = dataclasses.replace(upper.config, time_range=(args.expert_range, 1.0))
    both = ImagePipeline.from_pretrained(expert, experts=[upper])
    images, _ = refine(both, drafts, strength=args.strength, **refined, **common)
    arm(f"base {s - r} + expert {r}", images, args.base_steps + run, f"{s - r} + {r}")
    restore = ImagePipeline.from_pretrained(restorer)
    images, _ = refine(restore, drafts, strength=args.strength, **refined, **common)
    arm(f"base {s - r} + restorer {r}", images, args.base_steps + run, f"{s - r} + {r}")

    table = [
        "| arm | training steps | network calls | FID | judge accuracy |",
        "|---|---|---:|---:|---:|",
    ]
    table += [
        f"| {x['arm']} | {x['training']} | {x['calls']} | {x['FID']:.2f} | {x['judge accuracy']:.3f} |"
        for x in rows
    ]
    print("\n".join(table))
    (out / "table.md").write_text("\n".join(table) + "\n")
    samples = []
    for name, images in grids.items():
        file = out / (name.replace(" ", "_").replace(",", "").replace("+", "plus") + ".png")
        save_grid(images, file, columns=10, scale=2)
        samples.append(file.name)
    settings = {k: v for k, v in vars(args).items() if k not in ("results", "work")}
    write_results(out, figures={"rows": rows}, precision="fp32", samples=samples, settings=settings)
    (out / "rows.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
