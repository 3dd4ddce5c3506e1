"""Flow matching against the image recipe (v-prediction, min-SNR weighting) at equal training
steps, scored at 5, 10 and 20 network calls (issue #38: flow <= v at <= 10 calls, and FID at 5
calls within 1.5x of FID at 20).

Both arms train on Fashion-MNIST with the same preset, batch, seed and number of optimiser steps
(``diffuse train image`` and ``diffuse train image --process flow``); each draws the same
--n class-conditional images (labels 0..9 in turn, no guidance: calls = steps) with every
--samplers at every --calls, scored by one image judge trained here (FID and KID against the
test split, the judge's agreement with the class asked for). Writes ``results.json``,
``table.md``, ``samples.npz`` (every row's images, uint8) and a 100-image grid per row to
``docs/results/image/flow_vs_v/``. The v arm's folder is a teacher for ``research.image.distill``.

    uv run python -m research.image.flow_vs_v
    uv run python -m research.image.flow_vs_v --train-steps 20 --judge-steps 10 --n 20 \\
        --limit 500 --work /tmp/fv --results /tmp/fv/results
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from diffuse.demo_run import run_command
from research._results import RESULTS, results_dir, write_results
from research._utils import SHARED_DATA, study_parser, train_fresh

ARMS = {"v, min-SNR (the image recipe)": (), "flow matching": ("--process", "flow")}


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument("--data", default=str(SHARED_DATA / "fashion_mnist"))
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=2000, help="each arm's steps")
    parser.add_argument("--judge-steps", type=int, default=500)
    parser.add_argument("--limit", type=int, help="use only the first N training images")
    parser.add_argument("--calls", default="5,10,20", help="network calls per row")
    parser.add_argument("--samplers", default="unipc,dpmpp_2m")
    parser.add_argument("--n", type=int, default=1000, help="samples per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="keep finished models in --work")
    parser.add_argument("--work", default="outputs/flow_vs_v")
    parser.add_argument("--results", default=RESULTS / "image" / "flow_vs_v")
    args = parser.parse_args()
    work, out = Path(args.work), results_dir("image", args.results)
    limit = ("--limit", str(args.limit)) if args.limit else ()

    judge = work / "judge" / "final"
    if not (args.reuse and judge.is_dir()):
        run_command(
            *("train", "image-judge", "--data", args.data, "--batch-size", "64", *limit),
            *("--steps", str(args.judge_steps), "--out", str(judge.parent)),
        )
    models, seconds = {}, {}
    for name, extra in ARMS.items():
        began = time.perf_counter()
        folder = work / name.split(",")[0].split(" ")[0]
        models[name] = train_fresh(
            "image", args.data, folder, args.train_steps, args, *extra, *limit
        )
        seconds[name] = round(time.perf_counter() - began, 1)

    from diffimage import (
        ImagePipeline,
        judge_features,
        load_images,
        load_judge,
        save_grid,
        score_samples,
    )
    from diffimage.pixels import to_uint8

    judge_model = load_judge(judge)
    reference = judge_features(judge_model, load_images(args.data, split="test").images)
    labels = torch.arange(args.n) % 10
    rows, scored = [], {}
    for name, folder in models.items():
        pipe = ImagePipeline.from_pretrained(folder)
        for sampler in args.samplers.split(","):
            for calls in (int(c) for c in args.calls.split(",")):
                began = time.perf_counter()
                samples = pipe.sample(
                    args.n, labels=labels, sampler=sampler, steps=calls, seed=args.seed + 1
                )
                sample_s = time.perf_counter() - began
                r = score_samples(judge_model, samples, reference, labels=labels)
                row = {"arm": name, "sampler": sampler, "calls": calls, "fid": r.fid}
                row |= {"kid": r.kid, "accuracy": r.accuracy, "sample_seconds": sample_s}
                rows.append(row)
                key = f"{folder.parent.name}_{sampler}_{calls}"
                scored[key] = to_uint8(samples).numpy()
                save_grid(samples[:100], out / f"{key}.png", columns=10, scale=2)
                print(json.dumps(row), flush=True)

    table = format_table(rows)
    print(table)
    (out / "table.md").write_text(table + "\n")
    np.savez_compressed(out / "samples.npz", labels=labels.numpy(), **scored)
    settings = {k: v for k, v in vars(args).items() if k not in ("results", "work")}
    settings["train_seconds"] = seconds
    figures = {"rows": rows, "ratios": ratios(rows)}
    samples = ["samples.npz", *sorted(p.name for p in out.glob("*.png"))]
    write_results(out, figures=figures, precision="auto", samples=samples, settings=settings)


def ratios(rows: list[dict]) -> dict[str, float]:
    """FID of each (arm, sampler) at its fewest calls over its FID at its most, and flow's FID
    over v's at each (sampler, calls)."""
    fid = {(r["arm"], r["sampler"], r["calls"]): r["fid"] for r in rows}
    out = {}
    for arm, sampler in {(a, s) for a, s, _ in fid}:
        calls = sorted(c for a, s, c in fid if (a, s) == (arm, sampler))
        out[f"{arm}, {sampler}: {calls[0]} / {calls[-1]} calls"] = (
            fid[(arm, sampler, calls[0])] / fid[(arm, sampler, calls[-1])]
        )
    v, flow = list(ARMS)
    for a, sampler, calls in fid:
        if a == flow and (v, sampler, calls) in fid:
            out[f"flow / v, {sampler}, {calls} calls"] = (
                fid[(flow, sampler, calls)] / fid[(v, sampler, calls)]
            )
    return dict(sorted(out.items()))


def format_table(rows: list[dict]) -> str:
    lines = [
        "| arm | sampler | network calls | FID | KID | judge accuracy |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['arm']} | {r['sampler']} | {r['calls']} | {r['fid']:.3f} | {r['kid']:.4f} "
            f"| {r['accuracy']:.3f} |"
        )
    lines += ["", *(f"- {k}: {v:.2f}" for k, v in ratios(rows).items())]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
