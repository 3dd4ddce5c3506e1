"""Boosting on spectrograms at equal training steps (issue #35's audio target): does a second
pass (the base refining its own samples), a low-noise expert refining them, or a coarse base
plus a super-resolution stage keep the judge's accuracy and lower the judge-feature distance?

All on the embedded FSDD subset (or ``--data``), the same preset and batch, ``--total-steps`` S
per arm:
- base: the Gaussian model trained S steps, sampled at ``--steps`` K and at 2K;
- base + second pass: its K-step samples refined by itself from ``--strength`` of a K-step grid;
- base S - R + expert R: a base trained S - R steps, sampled at K, refined by a low-noise expert
  trained R more steps from its weights (``--noise-range 0,HI``), the base serving above HI;
- cascade: a base on a grid of half the mels and frames (``--set size=...``) trained S/2 steps,
  and a stage (``--set low_res=...``) trained S/2 steps, K steps each.
Every arm draws ``--per-class`` samples of each digit, voiced by Griffin-Lim, scored by one
audio judge trained here: its accuracy on the digit asked for, and the Fréchet distance of its
features to the real clips. Writes ``results.json``, ``table.md`` and the first WAV of each
digit per arm to ``docs/results/audio/boost/``.

    uv run python -m research.audio.boost
    uv run python -m research.audio.boost --total-steps 20 --refiner-steps 10 --judge-steps 10 --per-class 1 --results /tmp/b
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import torch

from diffuse import demo_data
from diffuse.demo_run import run_command
from research._results import RESULTS, results_dir, sample_files, write_results
from research._utils import study_parser, train_fresh


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument("--data", help="audio folder (default: the embedded FSDD subset)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--total-steps", type=int, default=600, help="S: each arm's total")
    parser.add_argument("--refiner-steps", type=int, default=150, help="R: the expert's share")
    parser.add_argument("--judge-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=10, help="K: the base's sampler steps")
    parser.add_argument("--strength", type=float, default=0.3, help="share of K steps refined")
    parser.add_argument("--expert-range", type=float, default=0.4, help="HI of the expert")
    parser.add_argument("--per-class", type=int, default=10, help="samples per digit")
    parser.add_argument("--guidance", type=float, default=3.0, help="as `sample audio`'s")
    parser.add_argument("--reuse", action="store_true", help="keep the models of --work")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="outputs/audio_boost")
    parser.add_argument("--results", default=RESULTS / "audio" / "boost")
    args = parser.parse_args()
    data = args.data or str(demo_data.path("audio"))
    work, out = Path(args.work), results_dir("audio", args.results)
    s, r, k = args.total_steps, args.refiner_steps, args.steps

    judge_dir = work / "judge"
    if not (judge_dir / "final").is_dir():
        run_command(
            *("train", "audio-judge", "--data", data, "--seed", str(args.seed)),
            *("--steps", str(args.judge_steps), "--out", str(judge_dir)),
        )
    full = train_fresh("audio", data, work / "base_full", s, args)
    short = train_fresh("audio", data, work / "base_short", s - r, args)
    expert = train_fresh(
        "audio",
        data,
        work / "expert",
        r,
        args,
        *("--init", str(short), "--noise-range", f"0,{args.expert_range}"),
    )
    from diffaudio import AudioPipeline
    from diffaudio.data import load_split
    from diffaudio.evaluate import evaluate_samples
    from diffaudio.judge import Judge
    from diffaudio.outputs import write_wav
    from diffcore.io import from_pretrained

    pipe = AudioPipeline.from_pretrained(full)
    spec = pipe.spectrogram
    coarse = f"[{spec.n_mels // 2},{spec.frames // 2}]"
    base_small = train_fresh(
        "audio", data, work / "cascade_base", s // 2, args, "--set", f"size={coarse}"
    )
    stage = train_fresh(
        "audio", data, work / "cascade_stage", s - s // 2, args, "--set", f"low_res={coarse}"
    )

    judge = from_pretrained(Judge, judge_dir / "final")
    real = load_split(data, spec, label_names=judge.config.label_names)
    names = pipe.model.config.label_names
    labels = torch.arange(len(names)).repeat(args.per_class)
    lookup = {n: i for i, n in enumerate(judge.config.label_names)}
    intended = torch.tensor([lookup[names[i]] for i in labels.tolist()])
    common = {"labels": labels, "guidance": args.guidance, "seed": args.seed + 1, "progress": True}
    rows = []

    def arm(name: str, spectrograms: torch.Tensor, calls: int, pipeline: Any = pipe) -> None:
        waves = pipeline.to_waveform(spectrograms)
        scores = evaluate_samples(judge, waves, intended, real.waves, real.labels).to_dict()
        rows.append(
            {"arm": name, "calls": calls}
            | {"judge accuracy": round(scores["accuracy"], 4)}
            | {"FD": round(scores["frechet_distance"], 2)}
        )
        folder = out / re.sub(r"[^a-z0-9]+", "_", name.replace("+", "plus")).strip("_")
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(len(names)):  # the first sample of each digit
            write_wav(folder / f"{names[labels[i]]}_{i}.wav", waves[i], spec.sample_rate)
        print(rows[-1], flush=True)

    drafts = pipe.sample(len(labels), steps=k, **common)
    arm(f"base {s}, {k} steps", drafts, k)
    arm(f"base {s}, {2 * k} steps", pipe.sample(len(labels), steps=2 * k, **common), 2 * k)
    run = max(1, round(args.strength * k))
    again = pipe.edit(drafts, args.strength, steps=k, **common)
    arm(f"base {s} + second pass, {k} + {run} steps", again, k + run)
    short_pipe = AudioPipeline.from_pretrained(short)
    drafts = short_pipe.sample(len(labels), steps=k, **common)
    arm(f"base {s - r}, {k} steps", drafts, k)
    upper = short_pipe.model  # the short base serves the levels above the expert's
    upper.config = dataclasses.replace(upper.config, time_range=(args.expert_range, 1.0))
    both = AudioPipeline.from_pretrained(expert, experts=[upper])
    refined = both.edit(drafts, args.strength, steps=k, **common)
    arm(f"base {s - r} + expert {r}, {k} + {run} steps", refined, k + run)
    cascade = AudioPipeline.from_pretrained(base_small)
    small = cascade.sample(len(labels), steps=k, **common)
    stage_pipe = AudioPipeline.from_pretrained(stage)
    up = stage_pipe.sample(len(labels), steps=k, low_res=small, **common)
    arm(f"cascade {s // 2} + {s - s // 2}, {k} + {k} steps", up, 2 * k, stage_pipe)

    table = [
        "| arm | network calls | judge accuracy | FD (judge features) |",
        "|---|---:|---:|---:|",
        *(
            f"| {x['arm']} | {x['calls']} | {x['judge accuracy']:.3f} | {x['FD']:.2f} |"
            for x in rows
        ),
    ]
    print("\n".join(table))
    (out / "table.md").write_text("\n".join(table) + "\n")
    settings = {k: str(v) for k, v in vars(args).items() if k not in ("results", "work")}
    write_results(
        out, figures={"rows": rows}, precision="fp32", samples=sample_files(out), settings=settings
    )
    (out / "rows.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
