"""Does the prediction target and loss weighting that wins on images also win on spectrograms?
(issue #36, study 4b)

The same arms train in both continuous domains at equal optimiser steps on the embedded demo
data — v-prediction with min-SNR weighting (the image default), v-prediction with uniform
weighting (the audio default), epsilon-prediction with uniform weighting (DDPM's), and flow
matching — each set with ``diffuse train --set`` / ``--process flow``. Image arms are scored by
an image judge trained here (FID on its features, and its agreement with the class asked
for), audio arms by a digit judge trained here (accuracy and Frechet distance on its
features), all sampled with dpmpp_2m at ``--steps``. Writes ``results.json``, ``table.md`` and
the image grids / first clip per digit to ``docs/results/cross_domain/schedules/``.

    uv run python -m research.cross_domain.schedules
    uv run python -m research.cross_domain.schedules --image-steps 20 --audio-steps 20 --n 20 --results /tmp/s
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from diffuse import demo_data
from diffuse.demo_run import run_command
from research._results import RESULTS, results_dir, sample_files, write_results
from research._utils import study_parser

ARMS = {  # name: extra arguments of `diffuse train`
    "v, min-SNR": ["--set", 'prediction="v"', "--set", 'weighting="min_snr"'],
    "v, uniform": ["--set", 'prediction="v"', "--set", 'weighting="uniform"'],
    "eps, uniform": ["--set", 'prediction="eps"', "--set", 'weighting="uniform"'],
    "flow matching": ["--process", "flow"],
}
KEEP_CLIPS = 10  # WAVs kept per audio arm (one per digit)


def _report(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())["report"]


def image_arms(work: Path, out: Path, args: Any) -> list[dict]:
    data = str(demo_data.path("image"))
    judge = work / "image_judge"
    if not (judge / "final").is_dir():
        run_command(
            *("train", "image-judge", "--data", data, "--batch-size", "64"),
            *("--test-split", "train", "--steps", str(args.judge_steps), "--out", str(judge)),
        )
    rows = []
    for name, extra in ARMS.items():
        folder = work / "image" / name.replace(", ", "_").replace(" ", "_")
        shutil.rmtree(folder, ignore_errors=True)  # equal steps: never resume another run
        start = time.perf_counter()
        run_command(
            *("train", "image", "--data", data, "--preset", args.image_preset, "--no-preview"),
            *("--steps", str(args.image_steps), "--batch-size", "64", "--seed", str(args.seed)),
            *extra,
            *("--out", str(folder)),
        )
        seconds = time.perf_counter() - start
        cell = out / "image" / folder.name
        run_command(
            *("eval", "image", "--model", str(folder / "final"), "--judge", str(judge / "final")),
            *("--n", str(args.n), "--labels", "all", "--steps", str(args.steps)),
            *("--seed", str(args.seed + 1), "--data", data, "--split", "train"),
            *("--out", str(cell)),
        )
        r = _report(cell)
        rows.append(
            {"domain": "image", "arm": name, "train seconds": round(seconds, 1)}
            | {"FID": round(r["fid"], 2), "judge accuracy": round(r["accuracy"], 4)}
        )
        print(rows[-1], flush=True)
    return rows


def audio_arms(work: Path, out: Path, args: Any) -> list[dict]:
    data = str(demo_data.path("audio"))
    judge = work / "audio_judge"
    if not (judge / "final").is_dir():
        run_command(
            *("train", "audio-judge", "--data", data, "--seed", str(args.seed)),
            *("--steps", str(args.audio_judge_steps), "--out", str(judge)),
        )
    rows = []
    for name, extra in ARMS.items():
        folder = work / "audio" / name.replace(", ", "_").replace(" ", "_")
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        run_command(
            *("train", "audio", "--data", data, "--preset", args.audio_preset),
            *("--steps", str(args.audio_steps), "--batch-size", "16", "--seed", str(args.seed)),
            *extra,
            *("--out", str(folder)),
        )
        seconds = time.perf_counter() - start
        cell = out / "audio" / folder.name
        run_command(
            *("eval", "audio", "--model", str(folder / "final"), "--judge", str(judge / "final")),
            *("--per-class", str(max(1, args.n // 10)), "--steps", str(args.steps)),
            *("--seed", str(args.seed + 1), "--data", data, "--use", "all", "--out", str(cell)),
        )
        for extra_clip in sorted(cell.glob("*.wav"))[KEEP_CLIPS:]:  # the seed redraws the rest
            extra_clip.unlink()
            extra_clip.with_suffix(".png").unlink(missing_ok=True)
        r = _report(cell)
        rows.append(
            {"domain": "audio", "arm": name, "train seconds": round(seconds, 1)}
            | {"judge accuracy": round(r["accuracy"], 4), "FD": round(r["frechet_distance"], 2)}
        )
        print(rows[-1], flush=True)
    return rows


def format_table(rows: list[dict]) -> str:
    image = {r["arm"]: r for r in rows if r["domain"] == "image"}
    audio = {r["arm"]: r for r in rows if r["domain"] == "audio"}
    lines = [
        "| arm | image FID ↓ | image judge ↑ | audio judge ↑ | audio FD ↓ |",
        "|---|---:|---:|---:|---:|",
    ]
    for arm in ARMS:
        i, a = image.get(arm, {}), audio.get(arm, {})
        cells = [
            f"{i['FID']:.2f}" if i else "",
            f"{i['judge accuracy']:.3f}" if i else "",
            f"{a['judge accuracy']:.3f}" if a else "",
            f"{a['FD']:.2f}" if a else "",
        ]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument("--domains", default="image,audio")
    parser.add_argument("--image-preset", default="small")
    parser.add_argument("--image-steps", type=int, default=500, help="optimiser steps, image")
    parser.add_argument("--audio-preset", default="tiny")
    parser.add_argument("--audio-steps", type=int, default=600, help="optimiser steps, audio")
    parser.add_argument("--judge-steps", type=int, default=300, help="image judge")
    parser.add_argument("--audio-judge-steps", type=int, default=200)
    parser.add_argument("--steps", type=int, default=20, help="dpmpp_2m sampler steps")
    parser.add_argument("--n", type=int, default=200, help="image samples (audio: n/10 a digit)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="outputs/schedules")
    parser.add_argument("--results", default=RESULTS / "cross_domain" / "schedules")
    args = parser.parse_args()
    work, out = Path(args.work), results_dir("cross_domain", args.results)
    rows = []
    for domain in args.domains.split(","):
        rows += {"image": image_arms, "audio": audio_arms}[domain](work, out, args)
    table = format_table(rows)
    print(table)
    (out / "table.md").write_text(table + "\n")
    samples = sample_files(out)
    settings = {k: v for k, v in vars(args).items() if k not in ("results", "work")}
    settings["arms"] = ARMS
    write_results(out, figures={"rows": rows}, precision="fp32", samples=samples, settings=settings)


if __name__ == "__main__":
    main()
