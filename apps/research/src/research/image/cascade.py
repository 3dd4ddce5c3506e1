"""A 14x14 base plus a 14 -> 28 super-resolution stage against one direct 28x28 model (issue #35,
study c): FID of each at the training compute each used.

All on the embedded Fashion-MNIST subset (or ``--data``) with the same preset and batch: the
direct model trains ``--direct-steps`` at 28x28; the base trains ``--base-steps`` on the images
resized to 14x14 (``--size 14x14 --fit resize``) and the stage ``--stage-steps`` at 28x28 with
``--set low_res=[14,14]``. Compute is the wall time of the training commands, measured here one
after another on the same machine. Every arm draws ``--n`` samples (ten classes in turn) at
``--steps`` dpmpp_2m steps per stage, scored by one 28x28 image judge trained here. Writes
``results.json``, ``table.md`` and each arm's first 100 samples to
``docs/results/image/cascade/``.

    uv run python -m research.image.cascade
    uv run python -m research.image.cascade --direct-steps 20 --base-steps 10 --stage-steps 10 --n 20 --results /tmp/c
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from diffuse import demo_data
from diffuse.demo_run import run_command
from research._results import RESULTS, results_dir, write_results
from research._utils import study_parser, train_fresh


def train(data: str, out: Path, steps: int, args: Any, *extra: str, preset: str = "") -> float:
    """:func:`train_fresh` of an image model; returns its wall seconds (the compute compared)."""
    start = time.perf_counter()
    train_fresh("image", data, out, steps, args, *extra, preset=preset)
    return time.perf_counter() - start


def evaluate(data: str, judge: Path, out: Path, args: Any, *models: str) -> dict:
    run_command(
        *("eval", "image", *models, "--judge", str(judge / "final"), "--n", str(args.n)),
        *("--labels", "all", "--steps", str(args.steps), "--seed", str(args.seed + 1)),
        *("--data", data, "--split", "train", "--out", str(out)),
    )
    report = json.loads((out / "run.json").read_text())["report"]
    return {"FID": round(report["fid"], 2), "judge accuracy": round(report["accuracy"], 4)}


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument("--data", help="image data (default: the embedded Fashion-MNIST subset)")
    parser.add_argument("--preset", default="small")
    parser.add_argument(
        "--stage-preset", help="the stage's (default: --preset; it only adds detail)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--direct-steps", type=int, default=500)
    parser.add_argument("--base-steps", type=int, default=350, help="the 14x14 base's steps")
    parser.add_argument("--stage-steps", type=int, default=250, help="the 14 -> 28 stage's")
    parser.add_argument("--judge-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=20, help="dpmpp_2m steps per stage")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="outputs/cascade")
    parser.add_argument("--results", default=RESULTS / "image" / "cascade")
    args = parser.parse_args()
    data = args.data or str(demo_data.path("image"))
    work, out = Path(args.work), results_dir("image", args.results)
    judge = work / "judge"
    if not (judge / "final").is_dir():
        run_command(
            *("train", "image-judge", "--data", data, "--batch-size", "64"),
            *("--test-split", "train", "--steps", str(args.judge_steps), "--out", str(judge)),
        )
    seconds = {"direct": train(data, work / "direct", args.direct_steps, args)}
    small = ("--size", "14x14", "--fit", "resize")
    seconds["base"] = train(data, work / "base14", args.base_steps, args, *small)
    stage = ("--set", "low_res=[14,14]")
    lighter = {"preset": args.stage_preset or args.preset}
    seconds["stage"] = train(data, work / "stage28", args.stage_steps, args, *stage, **lighter)
    direct = evaluate(data, judge, out / "direct", args, "--model", str(work / "direct"))
    models = ("--model", str(work / "base14"), "--stages", str(work / "stage28"))
    cascade = evaluate(data, judge, out / "cascade", args, *models)
    total = seconds["base"] + seconds["stage"]
    rows = [
        {"arm": "direct 28x28", "steps": f"{args.direct_steps}", "train seconds": seconds["direct"]}
        | direct,
        {"arm": "14x14 base + 14->28 stage", "train seconds": total}
        | {"steps": f"{args.base_steps} + {args.stage_steps}"}
        | cascade,
    ]
    ratio = total / seconds["direct"]
    table = [
        "| arm | steps | train seconds | FID | judge accuracy |",
        "|---|---|---:|---:|---:|",
        *(
            f"| {r['arm']} | {r['steps']} | {r['train seconds']:.0f} | {r['FID']:.2f} | "
            f"{r['judge accuracy']:.3f} |"
            for r in rows
        ),
        "",
        f"cascade compute / direct compute: {ratio:.2f}; FID ratio: {cascade['FID'] / direct['FID']:.2f}",
    ]
    print("\n".join(table))
    (out / "table.md").write_text("\n".join(table) + "\n")
    samples = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    settings = {k: v for k, v in vars(args).items() if k not in ("results", "work")}
    figures = {"rows": rows, "compute ratio": round(ratio, 3)}
    write_results(out, figures=figures, precision="fp32", samples=samples, settings=settings)


if __name__ == "__main__":
    main()
