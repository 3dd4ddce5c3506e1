"""``diffuse demo``, the main job: train a small model of each domain on the embedded demo data
(``diffuse.demo_data``), sample it, and write one page, ``<out>/index.html``.

Each domain's phase runs that domain's own commands (``diffuse train <domain>``, then ``sample``
or ``edit``) through :func:`diffuse.cli.main`, so the demo trains exactly as a user would and
holds no training logic of its own. Training is sized by ``--minutes`` (the commands' time
budget): the time given to the demo is shared out over the domains asked for. ``steps``
replaces that budget by a fixed step count (the tests' tiny runs).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from diffuse import demo_data, report
from diffuse.kit import DataError, UsageError

DOMAINS = ("image", "audio", "protein", "text")
MINUTES = {"full": 10.0, "quick": 3.0}  # the whole demo's time, for all four domains
TRAIN_SHARE = 0.6  # of a domain's time: the rest loads, samples and saves
TEMPLATES = (  # text infilling: the model fills the [MASK*n] spans
    "ROMEO:\nO, [MASK*24] night.\n",
    "First Citizen:\nWe are [MASK*16], good citizens.\n",
    "KING HENRY:\nNow, [MASK*20], and let us [MASK*12].\n",
    "JULIET:\nWhat's in a name? [MASK*32]\n",
)


Training = Callable[..., list[str]]  # share of a domain's training time -> the options


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
    minutes = MINUTES["quick" if quick else "full"] * len(domains) / len(DOMAINS)
    each = minutes / len(domains)
    print(
        f"diffuse demo: {', '.join(domains)}; about {minutes:.1f} minutes "
        f"({each:.1f} a domain{', fixed steps' if steps else ''})",
        file=sys.stderr,
    )
    phases = []
    for domain in domains:
        folder = out / domain
        source = str((data or {}).get(domain) or demo_data.path(domain))
        train = partial(_training, steps=steps, minutes=each * TRAIN_SHARE)
        print(f"[{domain}] training on {source}", file=sys.stderr)
        start = time.perf_counter()
        phase = PHASES[domain](folder, source, train, seed, quick or bool(steps))
        phase.seconds = time.perf_counter() - start
        phases.append(phase)
    index = out / "index.html"
    index.write_text(render_page(phases, command), encoding="utf-8")
    return index


def _training(share: float = 1.0, *, steps: int | None, minutes: float) -> list[str]:
    """The training options of a command given ``share`` of a domain's training time."""
    if steps:
        return ["--steps", str(steps)]
    from diffuse.kit.budget import process_start

    # --minutes counts from the process start, and all the demo's commands run in this one
    elapsed = (time.time() - process_start()) / 60
    return ["--minutes", f"{elapsed + share * minutes:.3f}"]


def _diffuse(*argv: str) -> None:
    from diffuse.cli import main

    argv = [*argv, "--device", "cpu"]
    if main(argv) != 0:
        raise DataError(f"`diffuse {' '.join(argv)}` failed, demo, expected it to succeed")


# One phase per domain: train, sample, and the page's section


def image_phase(folder: Path, data: str, train: Training, seed: int, small: bool) -> Phase:
    preset, batch = ("tiny", "32") if small else ("fmnist", "64")
    common = ["--out", str(folder / "run"), "--seed", str(seed)]
    _diffuse(
        "train",
        "image",
        "--data",
        data,
        "--preset",
        preset,
        "--batch-size",
        batch,
        *train(),
        *common,
    )
    n = "20" if small else "40"  # a column per class: n / classes rows
    sample = ["--model", str(folder / "run" / "final"), "--n", n, "--labels", "all"]
    _diffuse("sample", "image", *sample, "--steps", "20", "--out", str(folder / "samples"))
    grid = folder / "samples" / "grid.png"
    html = "<h2>Images</h2><p>one column per class</p>" + report._figure(grid, folder.parent)
    return _with_loss(Phase("image", html=html), folder / "run")


def text_phase(folder: Path, data: str, train: Training, seed: int, small: bool) -> Phase:
    shape = ["--preset", "tiny", "--block-size", "64"] if small else ["--block-size", "128"]
    run = ["--out", str(folder / "run"), "--seed", str(seed), "--batch-size", "16"]
    held_out = ["--eval-every", "0", "--val-fraction", "0.002"]  # a quick final bound
    _diffuse("train", "text", data, *shape, *train(), *run, *held_out)
    infills = folder / "infills.jsonl"
    edit = ["--model", str(folder / "run"), "--steps", "16", "--out", str(infills)]
    _diffuse("edit", "text", *edit, *(a for t in TEMPLATES for a in ("--text", t)))
    rows = [json.loads(line) for line in infills.read_text().splitlines() if line.strip()]
    shown = "".join(f"<pre>{highlight_infill(r['prompt'], r['text'])}</pre>" for r in rows)
    html = f"<h2>Texts</h2><p>infilled spans are <mark>marked</mark></p>{shown}"
    return _with_loss(Phase("text", html=html), folder / "run")


def audio_phase(folder: Path, data: str, train: Training, seed: int, small: bool) -> Phase:
    run = ["--out", str(folder / "run"), "--seed", str(seed), "--batch-size", "16"]
    _diffuse(
        "train", "audio", "--data", data, *(["--preset", "tiny"] if small else []), *train(), *run
    )
    samples = folder / "samples"
    sample = ["--model", str(folder / "run"), "--labels", "all", "--steps", "20"]
    _diffuse("sample", "audio", *sample, "--out", str(samples))  # one clip per digit
    # the page lies two folders up: link the WAVs from there
    html = report._audio(samples).replace('src="', f'src="{folder.name}/samples/')
    return _with_loss(Phase("audio", html=html), folder / "run")


def protein_phase(folder: Path, data: str, train: Training, seed: int, small: bool) -> Phase:
    shape = ["--preset", "tiny"] if small else []
    run = ["--seed", str(seed), "--batch-size", "16", *shape]
    _diffuse("train", "protein", data, *run, *train(0.6), "--out", str(folder / "run"))
    judge = ["--objective", "classifier", "--out", str(folder / "judge")]  # the family judge
    _diffuse("train", "protein", data, *run, *train(0.4), *judge)
    rows = judge_proteins(folder / "run", folder / "judge", folder / "samples.fasta", seed)
    accuracy = sum(r["family"] == r["judged family"] for r in rows) / len(rows)
    html = f"<h2>Proteins</h2>{report._rows_table(rows)}" + report._fasta(folder)
    phase = Phase("protein", html=html, metrics={"judge agrees": round(accuracy, 3)})
    return _with_loss(phase, folder / "run")


def judge_proteins(model: Path, judge: Path, fasta: Path, seed: int, each: int = 2) -> list[dict]:
    """Sample ``each`` sequences of every family into ``fasta``; per sequence its family, the
    family the judge gives it and the denoiser's NLL bound (nats per residue, lower = likelier)."""
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
        for i, record in enumerate(pipe.sample(each, family=family, seed=seed)):
            record.id = f"{family}_{i}"  # (each call numbers its samples from 0)
            records.append(record)
        families += [family] * each
    pipe.save(records, fasta)
    sequences = [str(r.seq) for r in records]
    tokens = collate([(encode(s), 0) for s in sequences])["tokens"]
    with torch.no_grad():
        nll = process_for(pipe.diffusion_block).nll_bound(
            pipe.model,
            tokens,
            generator=torch.Generator().manual_seed(seed),
            samples=4,
            loss_mask=tokens != PAD_ID,
            family=family_ids(families, pipe.families),
        )
    judged = classify(classifier, sequences)
    return [
        {"id": r.id, "family": f, "judged family": j, "NLL (nats/residue)": round(float(n), 3)}
        for r, f, j, n in zip(records, families, judged, nll.tolist(), strict=True)
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
