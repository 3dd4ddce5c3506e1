"""Cross-domain sampler sweep: the same sampler names and network-call budgets in all four
domains, each scored by its domain's judge, on the models of a finished ``diffuse demo``.

Continuous domains (image, audio) run diffcore's continuous samplers, token domains (protein,
text) its discrete ones, at the same budgets of network calls (Heun: the most steps that fit).
Scores: image FID and judge accuracy (the demo's image judge, against the demo data), audio
judge accuracy and Frechet distance (the demo's audio judge), protein judged-family accuracy
(the demo's family classifier), text share of words found in the training text. Each cell runs
the domain's own ``diffuse sample``/``eval`` commands, so the sweep measures what a user gets.
Writes ``results.json``, ``table.md``, ``sweep.png`` and every cell's samples (audio: the
first clip of each digit; the seed regenerates the rest) to ``docs/results/cross_domain/sweep/``.

    uv run diffuse demo && uv run python -m research.cross_domain.sweep --demo outputs/demo
    uv run python -m research.cross_domain.sweep --demo outputs/demo --calls 5,10,20 --n 100
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffcore.generation.continuous import steps_for_calls
from diffuse import demo_data
from diffuse.demo_run import run_command
from research._results import RESULTS, results_dir, write_results
from research._utils import study_parser

SAMPLERS = {
    "image": ("euler", "heun", "dpmpp_2m", "unipc"),
    "audio": ("euler", "heun", "dpmpp_2m", "unipc"),
    "protein": ("masked_ancestral", "confidence"),
    "text": ("masked_ancestral", "confidence"),
}
KEEP_CLIPS = 10  # WAVs kept of each audio cell (one per digit): 100 would be 1.6 MB a cell
SCORE = {  # the column each domain is plotted by, and whether higher is better
    "image": ("FID", False),
    "audio": ("judge accuracy", True),
    "protein": ("judged family accuracy", True),
    "text": ("word share", True),
}


def _report(path: Path) -> Any:
    return json.loads(path.read_text())


def image_cell(demo: Path, out: Path, sampler: str, steps: int, n: int, seed: int) -> dict:
    model, judge = demo / "image" / "run" / "final", demo / "image" / "judge" / "final"
    run_command(
        *("eval", "image", "--model", str(model), "--judge", str(judge), "--n", str(n)),
        *("--labels", "all", "--sampler", sampler, "--steps", str(steps), "--seed", str(seed)),
        *("--data", str(demo_data.path("image")), "--split", "train", "--out", str(out)),
    )
    report = _report(out / "run.json")["report"]
    return {"FID": report["fid"], "judge accuracy": report["accuracy"]}


def audio_cell(demo: Path, out: Path, sampler: str, steps: int, n: int, seed: int) -> dict:
    model, judge = demo / "audio" / "run" / "final", demo / "audio" / "judge" / "final"
    run_command(
        *("eval", "audio", "--model", str(model), "--judge", str(judge)),
        *("--per-class", str(max(1, n // 10)), "--sampler", sampler, "--steps", str(steps)),
        *("--seed", str(seed), "--data", str(demo_data.path("audio")), "--use", "all"),
        *("--out", str(out)),
    )
    report = _report(out / "run.json")["report"]
    for extra in sorted(out.glob("*.wav"))[KEEP_CLIPS:]:  # the rest: rerun, bit for bit
        extra.unlink()
        extra.with_suffix(".png").unlink(missing_ok=True)
    return {"judge accuracy": report["accuracy"], "FD": report["frechet_distance"]}


def protein_cell(demo: Path, out: Path, sampler: str, steps: int, n: int, seed: int) -> dict:
    from diffuse.demo_run import judge_proteins

    each = max(1, n // 10)  # of each family
    out.mkdir(parents=True, exist_ok=True)
    run, judge = demo / "protein" / "run", demo / "protein" / "judge"
    options = {"sampler": sampler, "steps": steps}
    rows = judge_proteins(run, judge, out / "samples.fasta", seed, each, **options)
    agree = sum(r["family"] == r["judged family"] for r in rows) / len(rows)
    return {"judged family accuracy": agree}


def text_cell(demo: Path, out: Path, sampler: str, steps: int, n: int, seed: int) -> dict:
    samples = out / "samples.jsonl"
    run_command(
        *("sample", "text", "--model", str(demo / "text" / "run"), "--n", str(max(1, n // 10))),
        *("--sampler", sampler, "--steps", str(steps), "--seed", str(seed)),
        *("--out", str(samples)),
    )
    reference = str(demo_data.path("text"))  # (the file)
    scores = out / "scores.json"
    model = ["--model", str(demo / "text" / "run")]  # (its tokenizer)
    run_command(
        "eval",
        "text",
        *model,
        "--samples",
        str(samples),
        "--reference",
        reference,
        "--out",
        str(scores),
    )
    return {"word share": _report(scores)["samples"]["word_share"]}


CELLS: dict[str, Callable[..., dict]] = {
    "image": image_cell,
    "audio": audio_cell,
    "protein": protein_cell,
    "text": text_cell,
}


def sweep(
    demo: Path, out: Path, *, domains: list[str], calls: list[int], n: int, seed: int
) -> list[dict]:
    """One row per domain, sampler and budget of network calls."""
    rows = []
    for domain in domains:
        for sampler in SAMPLERS[domain]:
            for budget in calls:
                steps = steps_for_calls(sampler, budget) if domain in ("image", "audio") else budget
                cell = out / domain / f"{sampler}_{budget}"
                shutil.rmtree(cell, ignore_errors=True)
                start = time.perf_counter()
                scores = CELLS[domain](demo, cell, sampler, steps, n, seed)
                row = {"domain": domain, "sampler": sampler, "calls": budget, "steps": steps}
                rows.append(row | scores | {"seconds": round(time.perf_counter() - start, 1)})
                print(rows[-1], flush=True)
    return rows


def format_table(rows: list[dict]) -> str:
    """A markdown table: one line per domain and sampler, one column per budget, the domain's
    plotted score in each cell."""
    calls = sorted({r["calls"] for r in rows})
    lines = [
        "| domain | score | sampler | " + " | ".join(f"{c} calls" for c in calls) + " |",
        "|---|---|---|" + "---:|" * len(calls),
    ]
    for domain in dict.fromkeys(r["domain"] for r in rows):
        name, _ = SCORE[domain]
        for sampler in SAMPLERS[domain]:
            cells = {
                r["calls"]: r[name]
                for r in rows
                if (r["domain"], r["sampler"]) == (domain, sampler)
            }
            values = " | ".join(f"{cells[c]:.3g}" if c in cells else "" for c in calls)
            lines.append(f"| {domain} | {name} | {sampler} | {values} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = list(dict.fromkeys(r["domain"] for r in rows))
    fig, axes = plt.subplots(1, len(domains), figsize=(3.2 * len(domains), 3), squeeze=False)
    for ax, domain in zip(axes[0], domains, strict=True):
        name, higher = SCORE[domain]
        for sampler in SAMPLERS[domain]:
            mine = [r for r in rows if (r["domain"], r["sampler"]) == (domain, sampler)]
            ax.plot([r["calls"] for r in mine], [r[name] for r in mine], "o-", label=sampler)
        ax.set(title=domain, xlabel="network calls", ylabel=name + (" ↑" if higher else " ↓"))
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument("--demo", default="outputs/demo", help="a finished `diffuse demo` --out")
    parser.add_argument("--domains", default="image,audio,protein,text")
    parser.add_argument("--calls", default="5,10,20", help="network-call budgets")
    parser.add_argument("--n", type=int, default=100, help="samples per cell (audio, text: n/10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=RESULTS / "cross_domain" / "sweep")
    args = parser.parse_args()
    demo, domains = Path(args.demo), args.domains.split(",")
    missing = [d for d in domains if not (demo / d / "run").is_dir()]
    if missing:
        raise SystemExit(
            f"{demo}: no trained {', '.join(missing)} model; run `uv run diffuse demo --out {demo}` first"
        )
    out = results_dir("cross_domain", args.results)
    calls = [int(c) for c in args.calls.split(",")]
    rows = sweep(demo, out, domains=domains, calls=calls, n=args.n, seed=args.seed)
    table = format_table(rows)
    print(table)
    (out / "table.md").write_text(table + "\n")
    plot(rows, out / "sweep.png")
    samples = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    settings = {"demo": str(demo), "n": args.n, "seed": args.seed, "samplers": SAMPLERS}
    write_results(out, figures={"rows": rows}, precision="fp32", samples=samples, settings=settings)


if __name__ == "__main__":
    main()
