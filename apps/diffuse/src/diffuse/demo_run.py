"""``diffuse demo``, the main job: train a small model of each domain on the embedded demo data
(``diffuse.demo_data``), sample it, score the samples with the domain's judge, and write one
page, ``<out>/index.html``.

Each domain's phase runs that domain's own commands (``diffuse train <domain>``, ``train
<domain>-judge``, ``eval``/``edit``) through :func:`diffuse.cli.main`, so the demo trains exactly
as a user would and holds no training logic of its own. Training runs a fixed number of steps per
domain (``PLANS``), so a demo gives the same models on every machine; only its wall time varies.
``steps`` replaces every step count (the tests' tiny runs).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffuse import demo_data, report
from diffuse.kit import DataError, UsageError

DOMAINS = ("image", "audio", "protein", "text")
# Steps and shapes per domain. The seconds are each phase's wall time measured on a 2-core AMD
# EPYC with AVX2 only (fp32), the slower CPU kind, on 2026-12-07 with `diffuse demo [--quick]`.
PLANS: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "image": {"preset": "tiny", "batch": 32, "steps": 400, "judge": 100, "n": 50, "s": 55},
        "audio": {"preset": "tiny", "steps": 150, "judge": 60, "s": 45},
        "protein": {"preset": "tiny", "steps": 300, "judge": 150, "s": 40},
        "text": {"preset": "tiny", "block": 64, "steps": 600, "s": 30},
    },
    "full": {
        "image": {"preset": "small", "batch": 64, "steps": 500, "judge": 300, "n": 100, "s": 240},
        "audio": {"preset": "tiny", "steps": 600, "judge": 200, "s": 140},
        "protein": {"preset": "tiny", "steps": 1000, "judge": 400, "s": 100},
        "text": {"preset": "micro", "block": 128, "steps": 800, "s": 110},
    },
}
TEMPLATES = (  # text infilling: the model fills the [MASK*n] spans
    "ROMEO:\nO, [MASK*24] night.\n",
    "First Citizen:\nWe are [MASK*16], good citizens.\n",
    "KING HENRY:\nNow, [MASK*20], and let us [MASK*12].\n",
    "JULIET:\nWhat's in a name? [MASK*32]\n",
)


@dataclass
class Phase:
    """What one domain's phase left for the page."""

    domain: str
    seconds: float = 0.0
    html: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


def parse_domains(text: str) -> list[str]:
    """``image,text`` -> ["image", "text"]; UsageError naming an unknown domain."""
    names = [d.strip() for d in text.split(",") if d.strip()]
    unknown = [d for d in names if d not in DOMAINS]
    if unknown or not names:
        raise UsageError(
            f"unknown domain {','.join(unknown) or repr(text)}, --domains, expected some of "
            f"{','.join(DOMAINS)}"
        )
    return list(dict.fromkeys(names))


def plan_for(domain: str, *, quick: bool, steps: int | None = None) -> dict[str, Any]:
    """The phase's shape and step counts; ``steps`` replaces each step count."""
    plan = dict(PLANS["quick" if quick else "full"][domain])
    if steps:
        plan |= {k: steps for k in ("steps", "judge") if k in plan}
    return plan


def run_demo(
    out: Path,
    *,
    domains: Sequence[str] = DOMAINS,
    quick: bool = False,
    steps: int | None = None,
    data: dict[str, str] | None = None,
    seed: int = 0,
    command: str = "diffuse demo",
) -> Path:
    """Run each domain's phase into ``out/<domain>/`` and write ``out/index.html``."""
    plans = {d: plan_for(d, quick=quick, steps=steps) for d in domains}
    estimate = sum(p["s"] for p in plans.values()) / 60
    print(
        f"diffuse demo: {', '.join(domains)}; about {estimate:.0f} minutes on 2 cores with AVX2 "
        f"(less with AVX-512){'; fixed --steps: shorter' if steps else ''}",
        file=sys.stderr,
    )
    phases, began = [], time.perf_counter()
    for number, domain in enumerate(domains, 1):
        folder = out / domain
        source = str((data or {}).get(domain) or demo_data.path(domain))
        elapsed = (time.perf_counter() - began) / 60
        print(
            f"[{number}/{len(domains)} {domain}, {elapsed:.1f} min in] training on {source}",
            file=sys.stderr,
        )
        start = time.perf_counter()
        phase = PHASES[domain](folder, source, plans[domain], seed)
        phase.seconds = time.perf_counter() - start
        phases.append(phase)
    index = out / "index.html"
    index.write_text(render_page(phases, command), encoding="utf-8")
    seconds = time.perf_counter() - began
    results = write_results(out / "results.json", phases, command, seconds, quick=quick)
    print(f"diffuse demo: done in {seconds / 60:.1f} min; wrote {results}", file=sys.stderr)
    return index


def write_results(
    path: Path, phases: list[Phase], command: str, seconds: float, *, quick: bool
) -> Path:
    """The run's figures beside the page, for anyone to compare or commit: command, machine
    (CPU flags, precision), date, revision, wall time, and each phase's seconds and metrics."""
    from diffuse.kit.record import git_revision, machine

    results = {
        "command": command,
        "plan": "quick" if quick else "full",
        "date": time.strftime("%Y-%m-%d"),
        "revision": git_revision(),
        "machine": machine(),
        "precision": "fp32",  # every phase runs --device cpu in float32
        "seconds": round(seconds, 1),
        "domains": {p.domain: {"seconds": round(p.seconds, 1)} | p.metrics for p in phases},
    }
    path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def run_command(*argv: str) -> None:
    """Run ``diffuse ARGV --device cpu`` in this process; DataError if it fails."""
    from diffuse.cli import main

    argv = [*argv, "--device", "cpu"]
    if main(argv) != 0:
        raise DataError(f"`diffuse {' '.join(argv)}` failed, demo, expected it to succeed")


def _report(folder: Path) -> dict[str, Any]:
    """The ``report`` of a command's run.json in ``folder``."""
    return json.loads((folder / "run.json").read_text())["report"]


# One phase per domain: train, judge, sample and score, and the page's section


def image_phase(folder: Path, data: str, plan: dict[str, Any], seed: int) -> Phase:
    common = ["--data", data, "--seed", str(seed)]
    run_command(
        *("train", "image", *common, "--preset", plan["preset"], "--no-preview"),
        *("--batch-size", str(plan["batch"]), "--steps", str(plan["steps"])),
        *("--out", str(folder / "run")),
    )
    judge = ["--batch-size", "64", "--steps", str(plan["judge"]), "--test-split", "train"]
    run_command("train", "image-judge", *common, *judge, "--out", str(folder / "judge"))
    # the samples come in class order, 0 1 2 ... 9 0 1 ...: ten columns = a column per class
    sample = ["--model", str(folder / "run" / "final"), "--n", str(plan["n"]), "--labels", "all"]
    judged = ["--judge", str(folder / "judge" / "final"), "--steps", "20"]
    real = [*common, "--split", "train"]  # the demo data has no test split
    run_command("eval", "image", *sample, *judged, *real, "--out", str(folder / "samples"))
    scores = _report(folder / "samples")
    metrics = {
        "judge agrees": round(scores["accuracy"], 3),
        f"FID ({scores['samples']} samples, demo judge)": round(scores["fid"], 1),
    }
    grid = folder / "samples" / "samples.png"
    html = "<h2>Images</h2><p>one column per class</p>" + report._figure(grid, folder.parent)
    return _with_loss(Phase("image", html=html, metrics=metrics), folder / "run")


def audio_phase(folder: Path, data: str, plan: dict[str, Any], seed: int) -> Phase:
    common = ["--data", data, "--seed", str(seed)]
    steps = ["--steps", str(plan["steps"]), "--batch-size", "16", "--preset", plan["preset"]]
    run_command("train", "audio", *common, *steps, "--out", str(folder / "run"))
    judge = ["--steps", str(plan["judge"]), "--out", str(folder / "judge")]
    run_command("train", "audio-judge", *common, *judge)
    samples = folder / "samples"
    sample = ["--model", str(folder / "run" / "final"), "--judge", str(folder / "judge" / "final")]
    run_command(
        "eval",
        "audio",
        *sample,
        *common,
        "--per-class",
        "1",
        "--steps",
        "20",
        "--out",
        str(samples),
    )
    scores = _report(samples)
    metrics = {
        "judge agrees": round(scores["accuracy"], 3),
        f"FD ({scores['count']} clips, demo judge)": round(scores["frechet_distance"], 1),
    }
    # the page lies two folders up: link the WAVs from there
    html = report._audio(samples, link=f"{folder.name}/samples/", facts=False)
    return _with_loss(Phase("audio", html=html, metrics=metrics), folder / "run")


def text_phase(folder: Path, data: str, plan: dict[str, Any], seed: int) -> Phase:
    shape = ["--preset", plan["preset"], "--block-size", str(plan["block"])]
    run = ["--out", str(folder / "run"), "--seed", str(seed), "--batch-size", "16"]
    held_out = ["--eval-every", "0", "--val-fraction", "0.002"]  # a quick final bound
    run_command("train", "text", data, *shape, "--steps", str(plan["steps"]), *run, *held_out)
    infills = folder / "infills.jsonl"
    edit = ["--model", str(folder / "run"), "--steps", "16", "--out", str(infills)]
    run_command("edit", "text", *edit, *(a for t in TEMPLATES for a in ("--text", t)))
    rows = [json.loads(line) for line in infills.read_text().splitlines() if line.strip()]
    shown = "".join(f"<pre>{highlight_infill(r['prompt'], r['text'])}</pre>" for r in rows)
    html = f"<h2>Texts</h2><p>infilled spans are <mark>marked</mark></p>{shown}"
    return _with_loss(Phase("text", html=html), folder / "run")


def protein_phase(folder: Path, data: str, plan: dict[str, Any], seed: int) -> Phase:
    run = ["--seed", str(seed), "--batch-size", "16", "--preset", plan["preset"]]
    steps = ["--steps", str(plan["steps"]), "--out", str(folder / "run")]
    run_command("train", "protein", data, *run, *steps)
    judge = ["--objective", "classifier", "--out", str(folder / "judge")]  # the family judge
    run_command("train", "protein", data, *run, "--steps", str(plan["judge"]), *judge)
    rows = judge_proteins(folder / "run", folder / "judge", folder / "samples.fasta", seed)
    accuracy = sum(r["family"] == r["judged family"] for r in rows) / len(rows)
    html = f"<h2>Proteins</h2>{report._rows_table(rows)}" + report._fasta(folder)
    phase = Phase("protein", html=html, metrics={"judge agrees": round(accuracy, 3)})
    return _with_loss(phase, folder / "run")


def judge_proteins(
    model: Path, judge: Path, fasta: Path, seed: int, each: int = 2, **sampling: Any
) -> list[dict]:
    """Sample ``each`` sequences of every family into ``fasta`` (``sampling``: the pipeline's
    sampler, steps and options); per sequence its family, the family the judge gives it and the
    denoiser's NLL bound (nats per residue, lower = likelier; None for a substitution model)."""
    import torch

    from diffcore.io import from_pretrained
    from diffprotein.alphabet import PAD_ID, encode
    from diffprotein.conditioning import family_ids
    from diffprotein.judges import FamilyClassifier, classify
    from diffprotein.model import process_for
    from diffprotein.pipeline import ProteinPipeline
    from diffprotein.training import collate
    from diffuse.kit import check_model_dir

    pipe = ProteinPipeline.from_pretrained(check_model_dir(model, "protein"), device="cpu")
    folder = check_model_dir(judge, "protein", option="--classifier")
    classifier = from_pretrained(FamilyClassifier, folder, device="cpu")
    records, families = [], []
    for family in pipe.families:
        for i, record in enumerate(pipe.sample(each, family=family, seed=seed, **sampling)):
            record.id = f"{family}_{i}"  # (each call numbers its samples from 0)
            records.append(record)
        families += [family] * each
    pipe.save(records, fasta)
    sequences = [str(r.seq) for r in records]
    nll = [None] * len(records)  # a substitution model has no likelihood bound
    if pipe.substitution is None:
        tokens = collate([(encode(s), 0) for s in sequences])["tokens"]
        with torch.no_grad():
            nll = (
                process_for(pipe.diffusion_block)
                .nll_bound(
                    pipe.model,
                    tokens,
                    generator=torch.Generator().manual_seed(seed),
                    samples=4,
                    loss_mask=tokens != PAD_ID,
                    family=family_ids(families, pipe.families),
                )
                .tolist()
            )
    judged = classify(classifier, sequences)
    return [
        {"id": r.id, "family": f, "judged family": j, "NLL (nats/residue)": n and round(n, 3)}
        for r, f, j, n in zip(records, families, judged, nll, strict=True)
    ]


PHASES: dict[str, Callable[..., Phase]] = {
    "image": image_phase,
    "audio": audio_phase,
    "protein": protein_phase,
    "text": text_phase,
}


def highlight_infill(template: str, filled: str) -> str:
    """``filled`` as HTML with the text that replaced each ``[MASK*n]`` span of ``template``
    in ``<mark>``; the whole text escaped and unmarked when the two do not line up."""
    pieces = re.split(r"\[MASK(?:\*\d+)?\]", template)
    pattern = "(.*?)".join(re.escape(p) for p in pieces)
    match = re.fullmatch(pattern, filled, flags=re.DOTALL)
    if match is None:
        return report._e(filled)
    out = [report._e(pieces[0])]
    for fill, piece in zip(match.groups(), pieces[1:], strict=True):
        out.append(f"<mark>{report._e(fill)}</mark>{report._e(piece)}")
    return "".join(out)


def _with_loss(phase: Phase, run: Path) -> Phase:
    """Add the run's loss curve and its last loss to ``phase``."""
    rows = report._read_jsonl(run / report.TRAIN_LOG)
    losses = [r for r in rows if report._finite(r.get("loss"))]
    if losses:
        phase.metrics |= {"steps": losses[-1].get("step"), "final loss": losses[-1]["loss"]}
    loss = report._loss_section(rows).replace("<h2>Loss</h2>", "<h3>training loss</h3>")
    phase.html += loss
    return phase


def render_page(phases: list[Phase], command: str) -> str:
    from diffuse.kit.record import machine

    metrics = [{"domain": p.domain, "seconds": round(p.seconds, 1)} | p.metrics for p in phases]
    meta = {"command": command, "machine": json.dumps(machine(), default=str)}
    body = "\n".join(f'<section id="{p.domain}">{p.html}</section>' for p in phases)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>diffuse demo</title>"
        f"<style>{report.STYLE}</style></head><body><h1>diffuse demo</h1>"
        f"{report._table(meta, css='meta')}<h2>Metrics</h2>{report._rows_table(metrics)}"
        f"{body}</body></html>\n"
    )
