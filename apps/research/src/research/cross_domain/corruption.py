"""Masking vs substitution at equal training compute, on text and proteins (issue #36 study 4c,
issue #35's substitution target).

Per domain, denoisers train the same preset for the same optimiser steps on the embedded demo
data: a masked-diffusion one and a substitution one (``--process substitution``; proteins also
``blosum``). Each samples at every step count of ``--calls`` (one network call per step) with
its samplers (masked: confidence; substitution: substitute, random and confidence
re-substitution). Text: an autoregressive peer trained the same steps judges the samples —
generative perplexity (lower is better; the peer's own samples give the scale), the share of
words found in the training text, the unigram entropy (a collapse check). Proteins: a family
classifier trained here says which family each sample looks like (ten families, chance 0.1).
Writes ``results.json``, ``table.md`` and every cell's samples to
``docs/results/cross_domain/corruption/``.

    uv run python -m research.cross_domain.corruption
    uv run python -m research.cross_domain.corruption --domains text --steps 50 --calls 8 --n 4 --results /tmp/c
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from diffuse import demo_data
from diffuse.demo_run import run_command
from research._results import RESULTS, results_dir, sample_files, write_results
from research._utils import study_parser

TEXT_ARMS = {  # name: (--process, sampler, sampler options)
    "masking": ("mask", "confidence", {}),
    "substitution": ("substitution", "substitute", {}),
    "substitution, confident": ("substitution", "substitute", {"resample": "confidence"}),
}
PROTEIN_ARMS = TEXT_ARMS | {
    "blosum": ("blosum", "substitute", {}),
    "blosum, confident": ("blosum", "substitute", {"resample": "confidence"}),
}


def _options(extra: dict[str, str]) -> list[str]:
    return [a for k, v in extra.items() for a in ("--option", f"{k}={json.dumps(v)}")]


def _train(argv: list[str], out: Path) -> float:
    start = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)  # equal steps: never resume another run
    run_command(*argv, "--out", str(out))
    return time.perf_counter() - start


def text_study(data: str, work: Path, out: Path, args: Any) -> list[dict]:
    shape = ["--preset", args.text_preset, "--block-size", str(args.block)]
    common = [*shape, "--steps", str(args.steps), "--batch-size", "16", "--seed", str(args.seed)]
    common += ["--eval-every", "0", "--val-fraction", "0.002"]
    seconds = {
        corruption: _train(
            ["train", "text", data, *common, "--process", corruption], work / corruption
        )
        for corruption in ("mask", "substitution")
    }
    peer = work / "peer"
    seconds["peer"] = _train(
        ["train", "text", data, *common, "--objective", "autoregressive"], peer
    )
    rows = []

    def scored(name: str, samples: Path, calls: int | None, trained: float) -> None:
        scores = out / "text" / f"{samples.stem}.scores.json"
        run_command(
            *("eval", "text", "--judge", str(peer), "--samples", str(samples)),
            *("--reference", data, "--out", str(scores)),
        )
        s = json.loads(scores.read_text())["samples"]
        rows.append(
            {"domain": "text", "arm": name, "calls": calls, "train seconds": round(trained, 1)}
            | {k: s[k] for k in ("generative_perplexity", "word_share", "unigram_entropy")}
        )
        print(rows[-1], flush=True)

    (out / "text").mkdir(parents=True, exist_ok=True)
    peer_samples = out / "text" / "peer.jsonl"
    run_command(
        *("sample", "text", "--model", str(peer), "--n", str(args.n), "--seed", str(args.seed)),
        *("--out", str(peer_samples)),
    )
    scored("autoregressive peer", peer_samples, None, seconds["peer"])
    for name, (corruption, sampler, extra) in TEXT_ARMS.items():
        for calls in args.calls:
            samples = out / "text" / f"{name.replace(', ', '_')}_{calls}.jsonl"
            run_command(
                *("sample", "text", "--model", str(work / corruption), "--n", str(args.n)),
                *("--sampler", sampler, "--steps", str(calls), "--seed", str(args.seed)),
                *_options(extra),
                *("--out", str(samples)),
            )
            scored(name, samples, calls, seconds[corruption])
    return rows


def protein_study(data: str, work: Path, out: Path, args: Any) -> list[dict]:
    from diffuse.demo_run import judge_proteins

    common = ["--preset", args.protein_preset, "--batch-size", "16", "--seed", str(args.seed)]
    steps = ["--steps", str(args.steps)]
    seconds = {
        c: _train(
            ["train", "protein", data, *common, *steps, "--process", c], work / f"protein_{c}"
        )
        for c in ("mask", "substitution", "blosum")
    }
    judge = work / "protein_judge"
    if not (judge / "final").is_dir():
        run_command(
            *("train", "protein", data, *common, "--steps", str(args.judge_steps)),
            *("--objective", "classifier", "--out", str(judge)),
        )
    rows = []
    each = max(1, args.n // 10)
    for name, (corruption, sampler, extra) in PROTEIN_ARMS.items():
        for calls in args.calls:
            cell = out / "protein" / f"{name.replace(', ', '_')}_{calls}.fasta"
            cell.parent.mkdir(parents=True, exist_ok=True)
            options = {"sampler": sampler, "steps": calls} | ({"options": extra} if extra else {})
            judged = judge_proteins(
                work / f"protein_{corruption}", judge, cell, args.seed, each, **options
            )
            agree = sum(r["family"] == r["judged family"] for r in judged) / len(judged)
            rows.append(
                {"domain": "protein", "arm": name, "calls": calls}
                | {"train seconds": round(seconds[corruption], 1), "judged family": round(agree, 3)}
            )
            print(rows[-1], flush=True)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = []
    text = [r for r in rows if r["domain"] == "text"]
    if text:
        lines += [
            "| text arm | calls | generative perplexity | word share | unigram entropy (bits) |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['arm']} | {r['calls'] or 'n/a'} | {r['generative_perplexity']:.2f} | "
            f"{r['word_share']:.3f} | {r['unigram_entropy']:.2f} |"
            for r in text
        ]
    protein = [r for r in rows if r["domain"] == "protein"]
    if protein:
        lines += ["", "| protein arm | calls | judged family |", "|---|---:|---:|"]
        lines += [f"| {r['arm']} | {r['calls']} | {r['judged family']:.3f} |" for r in protein]
    return "\n".join(lines)


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument("--domains", default="text,protein")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps of every model")
    parser.add_argument("--calls", default="16,64", help="sampler steps (network calls)")
    parser.add_argument("--n", type=int, default=32, help="samples per cell")
    parser.add_argument("--text-preset", default="micro")
    parser.add_argument("--block", type=int, default=128, help="text block size (tokens)")
    parser.add_argument("--protein-preset", default="tiny")
    parser.add_argument("--judge-steps", type=int, default=400, help="protein family classifier")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="outputs/corruption")
    parser.add_argument("--results", default=RESULTS / "cross_domain" / "corruption")
    args = parser.parse_args()
    args.calls = [int(c) for c in args.calls.split(",")]
    work, out = Path(args.work), results_dir("cross_domain", args.results)
    rows = []
    for domain in args.domains.split(","):
        study = {"text": text_study, "protein": protein_study}[domain]
        rows += study(str(demo_data.path(domain)), work, out, args)
    table = format_table(rows)
    print(table)
    (out / "table.md").write_text(table + "\n")
    samples = sample_files(out)
    settings = {k: v for k, v in vars(args).items() if k not in ("results", "work")}
    rows = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in rows
    ]
    write_results(out, figures={"rows": rows}, precision="fp32", samples=samples, settings=settings)


if __name__ == "__main__":
    main()
