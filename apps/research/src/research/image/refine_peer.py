"""A refiner on another generator's images (issue #35, study e): does this toolkit's model,
run over the last part of its process, improve the diffusers peer's samples?

The peer's samples are the image benchmark's committed ones (``--samples``, the arrays named
``peer_<sampler>_<calls>`` in ``docs/results/image/samples.npz``: diffusers' UNet2DModel and
DDPMScheduler trained beside ours, unconditional). The refiner is an image model of this
toolkit (``--model``; default: one trained here like the refiner study's base); each sample is
refined without a class (the model's unconditional branch), from one ``--strengths`` share of
``--steps`` dpmpp_2m steps, or from the level its level predictor reads on it (``train
image-level``, trained here when the model has none). One image judge (``--judge``; default:
trained here) scores every set: FID on its features against the training images. Writes
``results.json``, ``table.md`` and grids (before / after) to ``docs/results/image/refine_peer/``.

    uv run python -m research.image.refine_peer
    uv run python -m research.image.refine_peer --model outputs/refiner/base_full/final --judge outputs/refiner/judge/final
    uv run python -m research.image.refine_peer --train-steps 20 --judge-steps 10 --level-steps 10 --results /tmp/p
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from diffuse import demo_data
from diffuse.demo_run import run_command
from research._results import RESULTS, results_dir, write_results
from research._utils import study_parser


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument("--data", help="image data (default: the embedded Fashion-MNIST subset)")
    parser.add_argument("--samples", default=RESULTS / "image" / "samples.npz")
    parser.add_argument("--keys", default="peer_ddpm_1000,peer_dpmpp_2m_20", help="arrays")
    parser.add_argument("--model", help="the refiner's folder (default: train one here)")
    parser.add_argument("--judge", help="the judge's folder (default: train one here)")
    parser.add_argument("--preset", default="small", help="of the refiner trained here")
    parser.add_argument("--train-steps", type=int, default=500, help="of the refiner trained here")
    parser.add_argument("--judge-steps", type=int, default=300)
    parser.add_argument("--level-steps", type=int, default=500, help="level predictor's steps")
    parser.add_argument("--strengths", default="0.1,0.2,0.3,0.5")
    parser.add_argument("--steps", type=int, default=20, help="the refiner's grid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="outputs/refine_peer")
    parser.add_argument("--results", default=RESULTS / "image" / "refine_peer")
    args = parser.parse_args()
    data = args.data or str(demo_data.path("image"))
    work, out = Path(args.work), results_dir("image", args.results)
    common = ("--data", data, "--seed", str(args.seed))

    judge_dir = Path(args.judge) if args.judge else work / "judge" / "final"
    if not judge_dir.is_dir():
        run_command(
            *("train", "image-judge", *common, "--batch-size", "64", "--test-split", "train"),
            *("--steps", str(args.judge_steps), "--out", str(judge_dir.parent)),
        )
    model = Path(args.model) if args.model else work / "refiner" / "final"
    if not model.is_dir():
        run_command(
            *("train", "image", *common, "--preset", args.preset, "--no-preview"),
            *("--steps", str(args.train_steps), "--batch-size", "64"),
            *("--out", str(model.parent)),
        )
    if not (model / "level").is_dir():
        run_command(
            *("train", "image-level", "--model", str(model), *common),
            *("--steps", str(args.level_steps), "--out", str(work / "level")),
        )

    from diffimage import ImagePipeline, judge_features, load_images, load_judge, save_grid
    from diffimage.refine import load_level_predictor, refine

    judge = load_judge(judge_dir)
    reference = judge_features(judge, load_images(data, split="train").images)
    pipe = ImagePipeline.from_pretrained(model)
    predictor = load_level_predictor(model)
    arrays = np.load(args.samples)
    sampling = {"sampler": "dpmpp_2m", "steps": args.steps, "seed": args.seed + 1}
    sampling |= {"labels": None, "guidance": 1.0, "progress": True}
    rows = []

    def score(source: str, arm: str, images: torch.Tensor, calls: float) -> None:
        from diffimage import score_samples

        report = score_samples(judge, images, reference)
        rows.append(
            {"source": source, "arm": arm, "refiner calls": calls, "FID": round(report.fid, 2)}
        )
        name = f"{source}_{arm.split(' ')[0]}".replace("=", "")
        save_grid(images[:100], out / f"{name}.png", columns=10, scale=2)
        print(rows[-1], flush=True)

    for key in args.keys.split(","):
        images = torch.from_numpy(arrays[key]).float() / 127.5 - 1
        score(key, "as drawn", images, 0)
        for s in (float(v) for v in args.strengths.split(",")):
            refined, _ = refine(pipe, images, strength=s, **sampling)
            score(key, f"strength={s}", refined, round(s * args.steps))
        refined, strengths = refine(pipe, images, predictor=predictor, **sampling)
        calls = round(float(strengths.mean()) * args.steps, 1)
        score(key, f"predicted (mean strength {float(strengths.mean()):.2f})", refined, calls)

    table = [
        "| samples | refinement | refiner calls per image | FID |",
        "|---|---|---:|---:|",
        *(f"| {r['source']} | {r['arm']} | {r['refiner calls']} | {r['FID']:.2f} |" for r in rows),
    ]
    print("\n".join(table))
    (out / "table.md").write_text("\n".join(table) + "\n")
    settings = {k: str(v) for k, v in vars(args).items() if k not in ("results", "work")}
    samples = sorted(p.name for p in out.glob("*.png"))
    write_results(out, figures={"rows": rows}, precision="fp32", samples=samples, settings=settings)
    (out / "rows.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
