"""A masked-diffusion refiner on other generators' texts (issue #35, study e, text): does
re-noising a share of each text and redrawing it with the masked model improve the
autoregressive peer's samples, and the masked model's own few-step samples?

The texts and models are the corruption study's (``research.cross_domain.corruption``, run it
first): the autoregressive peer's samples and the masked model's 16-call samples committed in
``docs/results/cross_domain/corruption/text/``, the masked model (``--model``) and the peer
(``--judge``) in its work folder. Each source is refined at every ``--strengths`` share (``diffuse
refine text``, ``--steps`` network calls) and scored as that study scores: generative perplexity
under the peer (which favours the peer's own samples: they are its draws), the share of words
found in the training text (no model involved) and the unigram entropy (a collapse check).
Writes ``results.json``, ``table.md`` and every cell's texts to ``docs/results/text/refine_peer/``.

    uv run python -m research.text.refine_peer
    uv run python -m research.text.refine_peer --strengths 0.2 --steps 4 --results /tmp/t
"""

from __future__ import annotations

import json
from pathlib import Path

from diffuse import demo_data
from diffuse.demo_run import run_command
from research._results import RESULTS, results_dir, sample_files, write_results
from research._utils import study_parser

SOURCES = RESULTS / "cross_domain" / "corruption" / "text"


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument(
        "--samples", nargs="+", default=[SOURCES / "peer.jsonl", SOURCES / "masking_16.jsonl"]
    )
    parser.add_argument("--model", default="outputs/corruption/mask", help="the masked refiner")
    parser.add_argument("--judge", default="outputs/corruption/peer", help="autoregressive judge")
    parser.add_argument("--strengths", default="0.1,0.2,0.3,0.5")
    parser.add_argument("--steps", type=int, default=16, help="network calls per refinement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=RESULTS / "text" / "refine_peer")
    args = parser.parse_args()
    for folder, option in ((args.model, "--model"), (args.judge, "--judge")):
        if not Path(folder).is_dir():
            raise SystemExit(
                f"{folder} ({option}) does not exist: run `uv run python -m "
                "research.cross_domain.corruption --domains text` first, or give its folder"
            )
    data = str(demo_data.path("text"))
    out = results_dir("text", args.results)
    rows = []

    def scored(source: str, arm: str, texts: Path, calls: int) -> None:
        scores = texts.with_suffix(".scores.json")
        run_command(
            *("eval", "text", "--judge", args.judge, "--samples", str(texts)),
            *("--reference", data, "--out", str(scores)),
        )
        s = json.loads(scores.read_text())["samples"]
        rows.append(
            {"source": source, "arm": arm, "refiner calls": calls}
            | {k: s[k] for k in ("generative_perplexity", "word_share", "unigram_entropy")}
        )
        print(rows[-1], flush=True)

    for path in map(Path, args.samples):
        source = path.stem
        original = out / f"{source}.jsonl"
        original.write_text(path.read_text())
        scored(source, "as drawn", original, 0)
        for strength in args.strengths.split(","):
            cell = out / f"{source}_refined_{strength}.jsonl"
            run_command(
                *("refine", "text", "--model", args.model, "--input", str(original)),
                *("--strength", strength, "--steps", str(args.steps), "--seed", str(args.seed)),
                *("--out", str(cell)),
            )
            scored(source, f"strength {strength}", cell, args.steps)

    table = [
        "| samples | refinement | refiner calls | generative perplexity | word share | unigram entropy (bits) |",
        "|---|---|---:|---:|---:|---:|",
        *(
            f"| {r['source']} | {r['arm']} | {r['refiner calls']} | "
            f"{r['generative_perplexity']:.2f} | {r['word_share']:.3f} | {r['unigram_entropy']:.2f} |"
            for r in rows
        ),
    ]
    print("\n".join(table))
    (out / "table.md").write_text("\n".join(table) + "\n")
    settings = {k: str(v) for k, v in vars(args).items() if k != "results"}
    write_results(
        out, figures={"rows": rows}, precision="fp32", samples=sample_files(out), settings=settings
    )


if __name__ == "__main__":
    main()
