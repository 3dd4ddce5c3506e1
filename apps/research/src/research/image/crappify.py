"""Crappifier families vs Gaussian noise on images: at equal training steps, the quality each
reaches and the sampler steps it needs (issue #35, study d).

Every process trains the same U-Net preset for the same optimiser steps on the embedded
Fashion-MNIST subset (or ``--data``) with ``diffuse train image --process P``; each model is then
sampled at every step count of ``--steps`` through ``diffuse eval image`` with its own sampler
(Gaussian diffusion: dpmpp_2m; restorers: cold, Cold Diffusion's improved update) and scored by
one image judge trained here (FID on the judge's features against the training images, and the
judge's agreement with the requested class). Writes ``results.json``, ``table.md``,
``crappify.png`` and every cell's sample grid to ``docs/results/image/crappify/``.

    uv run python -m research.image.crappify
    uv run python -m research.image.crappify --train-steps 100 --steps 5 --n 20 --results /tmp/c
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from diffuse import demo_data
from diffuse.demo_run import run_command
from research._results import RESULTS, results_dir, write_results
from research._utils import study_parser

# The families compared: "noise" alone is Gaussian noise undone by a restorer (the restorer's
# parameterisation against v-prediction's); the others collapse the image to a constant at
# t = 1 (blur to the mean, downsample to one pixel), with a little noise for diversity.
PROCESSES = {
    "gaussian (v-pred)": ("diffusion", "dpmpp_2m"),
    "noise": ("noise:1", "cold"),
    "blur+noise": ("blur:8+noise:0.5", "cold"),
    "downsample+noise": ("downsample:1+noise:0.5", "cold"),
    "blur+jpeg+noise": ("blur:8+jpeg:5+noise:0.5", "cold"),
}


def train(data: str, out: Path, spec: str, args: Any) -> float:
    start = time.perf_counter()
    run_command(
        *("train", "image", "--data", data, "--preset", args.preset, "--no-preview"),
        *("--steps", str(args.train_steps), "--batch-size", str(args.batch_size)),
        *("--process", spec, "--seed", str(args.seed), "--out", str(out)),
    )
    return time.perf_counter() - start


def evaluate(data: str, model: Path, judge: Path, out: Path, sampler: str, steps: int, args):
    run_command(
        *("eval", "image", "--model", str(model), "--judge", str(judge), "--n", str(args.n)),
        *("--labels", "all", "--sampler", sampler, "--steps", str(steps)),
        *("--seed", str(args.seed + 1), "--data", data, "--split", "train", "--out", str(out)),
    )
    report = json.loads((out / "run.json").read_text())["report"]
    return {"FID": report["fid"], "judge accuracy": report["accuracy"]}


def format_table(rows: list[dict], steps: list[int]) -> str:
    lines = [
        "| process | --process | sampler | train s | "
        + " | ".join(f"FID / judge @{s}" for s in steps)
        + " |",
        "|---|---|---|---:|" + "---:|" * len(steps),
    ]
    for name in dict.fromkeys(r["process"] for r in rows):
        mine = {r["steps"]: r for r in rows if r["process"] == name}
        first = next(iter(mine.values()))
        cells = " | ".join(
            f"{mine[s]['FID']:.1f} / {mine[s]['judge accuracy']:.2f}" if s in mine else ""
            for s in steps
        )
        lines.append(
            f"| {name} | `{first['spec']}` | {first['sampler']} | {first['train seconds']:.0f} "
            f"| {cells} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for name in dict.fromkeys(r["process"] for r in rows):
        mine = [r for r in rows if r["process"] == name]
        for ax, key in zip(axes, ("FID", "judge accuracy"), strict=True):
            ax.plot([r["steps"] for r in mine], [r[key] for r in mine], "o-", label=name)
    axes[0].set(xlabel="sampler steps (network calls)", ylabel="FID ↓", yscale="log")
    axes[1].set(xlabel="sampler steps (network calls)", ylabel="judge accuracy ↑")
    for ax in axes:
        ax.set_xscale("log", base=2)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument("--data", help="image data (default: the embedded Fashion-MNIST subset)")
    parser.add_argument("--preset", default="small", help="U-Net preset of every model")
    parser.add_argument("--train-steps", type=int, default=500, help="optimiser steps per model")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--judge-steps", type=int, default=300)
    parser.add_argument("--steps", default="5,10,20", help="sampler steps to score")
    parser.add_argument("--n", type=int, default=200, help="samples per cell")
    parser.add_argument("--processes", default=",".join(PROCESSES), help="names of PROCESSES")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="outputs/crappify", help="models and judge go here")
    parser.add_argument("--results", default=RESULTS / "image" / "crappify")
    args = parser.parse_args()
    data = args.data or str(demo_data.path("image"))
    steps = [int(s) for s in args.steps.split(",")]
    names = [n.strip() for n in args.processes.split(",")]
    unknown = [n for n in names if n not in PROCESSES]
    if unknown:
        raise SystemExit(f"unknown processes {unknown}; expected names of {list(PROCESSES)}")
    work, out = Path(args.work), results_dir("image", args.results)
    judge = work / "judge"
    if not (judge / "final").is_dir():
        run_command(
            *("train", "image-judge", "--data", data, "--batch-size", "64"),
            *("--test-split", "train", "--steps", str(args.judge_steps), "--out", str(judge)),
        )
    rows = []
    for name in names:
        spec, sampler = PROCESSES[name]
        folder = work / spec.replace(":", "_").replace("+", "-")
        shutil.rmtree(folder, ignore_errors=True)  # equal steps: never resume another run
        seconds = train(data, folder, spec, args)
        for k in steps:
            cell = out / folder.name / f"{sampler}_{k}"
            shutil.rmtree(cell, ignore_errors=True)
            scores = evaluate(data, folder / "final", judge / "final", cell, sampler, k, args)
            row = {"process": name, "spec": spec, "sampler": sampler, "steps": k}
            rows.append(row | scores | {"train seconds": round(seconds, 1)})
            print(rows[-1], flush=True)
    table = format_table(rows, steps)
    print(table)
    (out / "table.md").write_text(table + "\n")
    plot(rows, out / "crappify.png")
    samples = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    settings = {k: getattr(args, k) for k in ("preset", "train_steps", "batch_size", "n", "seed")}
    write_results(
        out,
        figures={"rows": rows},
        precision="fp32",
        samples=samples,
        settings=settings | {"data": data, "judge_steps": args.judge_steps},
    )


if __name__ == "__main__":
    main()
