"""One model against two experts per noise level at equal training compute (issue #35, study b).

All on the embedded Fashion-MNIST subset (or ``--data``), the same preset and batch, the same
total optimiser steps S:
- one model: all noise levels, S steps;
- two experts from scratch: split at the time where the one model's loss curve bends, each
  trained S/2 steps on its side (``--noise-range``);
- two experts fine-tuned: a model trained S/2 steps on all levels, then each expert S/4 more
  steps on its side from those weights (``--init``: continued pre-training).
The bend: the one model's loss per noise level is measured on a fixed batch at ``--levels``
times; the split is the point of that curve farthest from the chord joining its ends (the
"knee"). Every arm draws ``--n`` samples (ten classes in turn) at ``--steps`` dpmpp_2m steps,
scored by one image judge trained here. Writes ``results.json``, ``table.md``, the loss curve
and each arm's first 100 samples to ``docs/results/image/experts/``.

    uv run python -m research.image.experts
    uv run python -m research.image.experts --total-steps 40 --n 20 --judge-steps 10 --results /tmp/e
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch

from diffuse import demo_data
from diffuse.demo_run import run_command
from research._results import RESULTS, results_dir, write_results
from research._utils import study_parser, train_fresh
from research.image.cascade import evaluate


@torch.no_grad()
def loss_by_level(model_dir: Path, data: str, times: list[float], *, n: int = 256) -> list[float]:
    """The model's training loss at each time of ``times`` (its own weighting), on the same
    ``n`` training images and the same noise at every time."""
    from diffimage import ImagePipeline, load_images

    pipe = ImagePipeline.from_pretrained(model_dir)
    model, process = pipe.model, pipe.model.process
    batch = load_images(data, split="train", limit=n)[:n]
    cond = {"labels": batch["labels"]} if "labels" in batch and model.num_classes else {}
    losses = []
    for t in times:
        at_t = dataclasses.replace(process, t_min=t, t_max=min(1.0, t + 1e-6))
        generator = torch.Generator().manual_seed(0)
        losses.append(float(at_t.loss(model, batch["images"], generator, **cond)))
    return losses


def knee(xs: list[float], ys: list[float]) -> float:
    """The x of the point of (xs, ys) farthest from the chord between the first and last, both
    axes scaled to [0, 1] (where the curve bends most)."""
    x = torch.tensor(xs, dtype=torch.float64)
    y = torch.tensor(ys, dtype=torch.float64)
    x = (x - x.min()) / (x.max() - x.min())
    y = (y - y.min()) / (y.max() - y.min()).clamp_min(1e-12)
    (x0, y0), (x1, y1) = (x[0], y[0]), (x[-1], y[-1])
    distance = ((y1 - y0) * x - (x1 - x0) * y + x1 * y0 - y1 * x0).abs()
    return xs[int(distance.argmax())]


def plot_curve(times: list[float], losses: list[float], split: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(times, losses, marker="o", ms=3)
    ax.axvline(split, color="tab:red", ls="--", label=f"split t = {split:.2f}")
    ax.set_xlabel("time t (noise level)")
    ax.set_ylabel("training loss")
    ax.set_title("one model's loss per noise level")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument("--data", help="image data (default: the embedded Fashion-MNIST subset)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--total-steps", type=int, default=500, help="S: each arm's total")
    parser.add_argument("--judge-steps", type=int, default=300)
    parser.add_argument("--levels", type=int, default=24, help="times on the loss curve")
    parser.add_argument("--split", type=float, help="the experts' boundary (default: the knee)")
    parser.add_argument("--steps", type=int, default=20, help="dpmpp_2m sampler steps")
    parser.add_argument("--n", type=int, default=500, help="samples per arm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="outputs/experts")
    parser.add_argument("--results", default=RESULTS / "image" / "experts")
    args = parser.parse_args()
    data = args.data or str(demo_data.path("image"))
    work, out = Path(args.work), results_dir("image", args.results)
    s = args.total_steps

    judge = work / "judge"
    if not (judge / "final").is_dir():
        run_command(
            *("train", "image-judge", "--data", data, "--batch-size", "64"),
            *("--test-split", "train", "--steps", str(args.judge_steps), "--out", str(judge)),
        )
    one = train_fresh("image", data, work / "one", s, args)
    times = [(i + 0.5) / args.levels for i in range(args.levels)]
    losses = loss_by_level(one, data, times)
    split = round(args.split if args.split is not None else knee(times, losses), 3)
    plot_curve(times, losses, split, out / "loss_by_level.png")
    sides = {"low": f"0,{split}", "high": f"{split},1"}
    scratch = [
        train_fresh("image", data, work / f"scratch_{side}", s // 2, args, "--noise-range", r)
        for side, r in sides.items()
    ]
    half = train_fresh("image", data, work / "half", s // 2, args)
    init = ("--init", str(half))
    tuned = [
        train_fresh("image", data, work / f"tuned_{side}", s // 4, args, *init, "--noise-range", r)
        for side, r in sides.items()
    ]

    arms = {
        f"one model, {s} steps": ["--model", str(one)],
        f"two experts from scratch, {s // 2} + {s // 2}": [
            *("--model", str(scratch[0]), "--experts", str(scratch[1]))
        ],
        f"two experts from a {s // 2}-step model, + {s // 4} + {s // 4}": [
            *("--model", str(tuned[0]), "--experts", str(tuned[1]))
        ],
    }
    rows = []
    for name, models in arms.items():
        folder = work / "samples" / name.split(",")[0].replace(" ", "_")
        rows.append({"arm": name} | evaluate(data, judge, folder, args, *models))
        shutil.copy(folder / "samples.png", out / f"{folder.name}.png")
        print(rows[-1], flush=True)

    table = [
        f"Split at t = {split} (the knee of the one model's loss per level); "
        f"{args.n} samples per arm at {args.steps} dpmpp_2m steps.",
        "",
        "| arm | FID | judge accuracy |",
        "|---|---:|---:|",
    ]
    table += [f"| {r['arm']} | {r['FID']:.2f} | {r['judge accuracy']:.3f} |" for r in rows]
    print("\n".join(table))
    (out / "table.md").write_text("\n".join(table) + "\n")
    figures = {"split": split, "loss_by_level": dict(zip(times, losses, strict=True)), "rows": rows}
    settings = {k: v for k, v in vars(args).items() if k not in ("results", "work")}
    samples = sorted(p.name for p in out.glob("*.png"))
    write_results(out, figures=figures, precision="fp32", samples=samples, settings=settings)
    (out / "rows.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
