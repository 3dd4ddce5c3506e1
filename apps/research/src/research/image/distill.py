"""Image distillation: how close do progressive-distillation students sampling in 1, 2 and 4
calls come to their teacher's FID at 20 calls (issue #38: 4 calls within 1.5x, 2 within 2x)?

The teacher is a trained model folder (the image benchmark's, by default); each round of
``diffimage.distill_model`` trains --round-steps optimiser steps on Fashion-MNIST and halves
the DDIM steps, from --teacher-calls down to --calls. Every row samples the same --samples
class-conditional images (labels 0..9 in turn, no guidance, so calls = steps) and is scored by
the image benchmark's judge: FID and KID against the test split, and the judge's accuracy.
The teacher's rows include its best few-call solver (UniPC) at the students' call counts, on
the Karras grid and on a grid fitted to the teacher (``ImagePipeline.fit_grid``, 64 other
draws), and UniPC at 5 calls (issue #38: FID at 5 calls within 1.5x of FID at 20).

    uv run python -m research.image.distill --teacher outputs/image_benchmark/ours/final \\
        --judge outputs/image_benchmark/judge/final
    uv run python -m research.image.distill --round-steps 5 --samples 50 --calls 4 \\
        --teacher-calls 8 --out outputs/distill_smoke --results outputs/distill_smoke/results
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffcore.training import TrainConfig, default_ema_decay, halvings
from diffimage import (
    ImagePipeline,
    distill_model,
    judge_features,
    load_images,
    load_judge,
    save_grid,
    score_samples,
)
from diffimage.pixels import to_uint8
from research._results import results_dir, write_results
from research._utils import SHARED_DATA, study_parser

# (sampler, calls, grid): the teacher's rows beside those at the students' calls (ddim as
# distilled, unipc on the Karras grid and on a grid fitted to the model)
TEACHER_ROWS = [("dpmpp_2m", 20, None), ("dpmpp_2m", 10, None), ("unipc", 5, None)]
TEACHER_ROWS += [("unipc", 5, "fitted")]


def parse_args() -> argparse.Namespace:
    p = study_parser(__spec__.name, __doc__)
    p.add_argument("--teacher", default="outputs/image_benchmark/ours/final")
    p.add_argument("--judge", default="outputs/image_benchmark/judge/final")
    p.add_argument("--data", default=str(SHARED_DATA / "fashion_mnist"))
    p.add_argument("--out", default="outputs/image_distill", help="the rounds' run folders")
    p.add_argument("--teacher-calls", type=int, default=32, help="the first teacher's DDIM steps")
    p.add_argument("--calls", type=int, default=1, help="the last student's")
    p.add_argument("--round-steps", type=int, default=1000, help="optimiser steps per round")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--precision", default="bf16", help="autocast (bf16: AVX-512 BF16 CPUs)")
    p.add_argument("--samples", type=int, default=1000, help="samples per row")
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", help="default: docs/results/image_distill")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    rounds = halvings(args.teacher_calls, args.calls)
    train = load_images(args.data, split="train", limit=args.limit)
    test = load_images(args.data, split="test")
    judge = load_judge(args.judge, device=args.device)
    reference = judge_features(judge, test.images)
    teacher = ImagePipeline.from_pretrained(args.teacher, device=args.device)
    labels = torch.arange(args.samples) % teacher.model.num_classes

    config = TrainConfig(
        steps=args.round_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        ema_decay=default_ema_decay(args.round_steps),
        precision=args.precision,
        checkpoint_every=max(1, args.round_steps // 4),
        log_every=max(1, args.round_steps // 10),
        seed=args.seed,
    )
    start = time.perf_counter()
    folders = distill_model(
        teacher.model,
        train,
        config,
        out_dir=out,
        steps=args.calls,
        teacher_steps=args.teacher_calls,
        device=args.device,
    )
    seconds = time.perf_counter() - start  # 0 for rounds an earlier run finished

    rows, scored = [], {}

    def score(who: str, pipe: ImagePipeline, sampler: str, calls: int, grid=None) -> None:
        options = {}
        if grid == "fitted":  # fitted on other draws (seed + 1) than the scored ones
            fit_labels = torch.arange(64) % pipe.model.num_classes
            fit = pipe.fit_grid(sampler, calls, n=64, seed=args.seed + 1, labels=fit_labels)
            options["grid"] = fit.tolist()
        samples = pipe.sample(
            args.samples,
            labels=labels,
            sampler=sampler,
            steps=calls,
            seed=args.seed,
            options=options,
        )
        report = score_samples(judge, samples, reference, labels=labels)
        row = {"model": who, "sampler": sampler, "grid": grid or "default", "calls": calls}
        row |= {"fid": report.fid, "kid": report.kid, "accuracy": report.accuracy}
        row |= {"levels": options["grid"]} if grid else {}
        rows.append(row)
        name = f"{who}_{sampler}{'_' + grid if grid else ''}_{calls}"
        scored[name] = to_uint8(samples).numpy()
        save_grid(samples[:100], out / f"{name}.png", columns=10, scale=2)
        print(json.dumps(row), flush=True)

    for sampler, calls, grid in TEACHER_ROWS:
        score("teacher", teacher, sampler, calls, grid)
    for calls in rounds:
        score("teacher", teacher, "ddim", calls)
        score("teacher", teacher, "unipc", calls)
        score("teacher", teacher, "unipc", calls, "fitted")
    for calls, folder in zip(rounds, folders, strict=True):
        score("student", ImagePipeline.from_pretrained(folder, device=args.device), "ddim", calls)

    reference_fid = rows[0]["fid"]
    students = {r["calls"]: r["fid"] / reference_fid for r in rows if r["model"] == "student"}
    table = format_table(rows, reference_fid)
    (out / "table.md").write_text(table + "\n")
    print(table)
    folder = results_dir("image_distill", args.results)
    np.savez_compressed(folder / "samples.npz", labels=labels.numpy(), **scored)
    figures = {"rows": rows, "student_fid_over_teacher_20": students}
    settings = {k: getattr(args, k) for k in ("teacher", "teacher_calls", "calls", "round_steps")}
    settings |= {"batch_size": args.batch_size, "lr": args.lr, "samples": args.samples}
    settings |= {"distill_seconds": seconds, "device": args.device}
    path = write_results(
        folder,
        figures=figures,
        precision=args.precision,
        device=str(args.device),
        samples=["samples.npz"],
        settings=settings,
    )
    print(f"results: {path}")


def format_table(rows: list[dict], reference_fid: float) -> str:
    lines = [
        "| model | sampler | grid | network calls | FID | FID / teacher at 20 | KID | "
        "judge accuracy |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['sampler']} | {r['grid']} | {r['calls']} | {r['fid']:.3f} | "
            f"{r['fid'] / reference_fid:.2f} | {r['kid']:.4f} | {r['accuracy']:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
