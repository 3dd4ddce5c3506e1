"""``diffuse report RUN_DIR``: one self-contained HTML page for a training or sampling folder.

The page shows what the folder's run record says (command, date, git revision, machine, seed,
the resolved configs), the loss curve of ``train_log.jsonl``, the samples found beside it
(preview and sample PNGs, WAVs with their spectrograms, FASTA records, texts) and its metrics.
Pictures are embedded as data URIs, so the page travels alone; WAVs are linked relatively, so
they play while the page stays in the folder. Whatever is missing is left out.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from diffuse.kit.errors import DataError

REPORT_NAME = "report.html"
TRAIN_LOG = "train_log.jsonl"  # diffcore.training.history.TRAIN_LOG (not imported: no torch)
MAX_IMAGES = 32  # sample PNGs shown; the rest are counted
MAX_SAMPLES = 24  # WAVs, FASTA records and texts shown
MAX_BYTES = 4_000_000  # larger pictures and text files are linked, not embedded
SKIP_FOLDERS = {"checkpoints", "final", "model", "tokenizer"}  # not outputs
NOT_METRICS = {"config.json", "difftext.json", "run.json"}
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;
text-align:left;vertical-align:top}pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap}
figure{display:inline-block;margin:4px;text-align:center}figcaption{font-size:80%}
.clip{display:inline-block;margin:4px 8px;vertical-align:top}
.meta td:first-child{font-weight:bold}"""


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` for the run folder ``run_dir`` and return its path.
    Raises DataError when ``run_dir`` is not a folder holding a run record (``run.json``, or
    ``<name>.run.json`` beside a sampling command's output file)."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder, RUN_DIR, expected a run folder")
    records = find_records(folder)
    if not records:
        raise DataError(
            f"no run.json in {folder}, RUN_DIR, expected a folder written by a diffuse command"
        )
    path = folder / REPORT_NAME
    path.write_text(render_report(folder, records), encoding="utf-8")
    return path


def find_records(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The run records of ``folder``: its ``run.json``, or else every ``*.run.json``."""
    paths = [folder / "run.json"] if (folder / "run.json").is_file() else []
    paths = paths or sorted(folder.glob("*.run.json"))
    records = []
    for path in paths:
        record = _read_json(path)
        if not isinstance(record, dict):
            raise DataError(f"{path} is not a run record (JSON object), RUN_DIR, expected one")
        records.append((path, record))
    return records


def render_report(folder: Path, records: list[tuple[Path, dict[str, Any]]]) -> str:
    """The HTML page of ``folder`` with its run ``records`` (see :func:`find_records`)."""
    first = records[0][1]
    parts = [f"<h1>{_e(first.get('command', 'diffuse run'))}</h1>"]
    for path, record in records:
        if len(records) > 1:
            parts.append(f"<h2>{_e(path.name)}: <code>{_e(record.get('command', ''))}</code></h2>")
        parts.append(_header(record))
        parts.extend(_configs(record))
    parts.append(_loss_section(_read_jsonl(folder / TRAIN_LOG)))
    parts += [_images(folder), _audio(folder), _fasta(folder), _texts(folder)]
    parts.append(_metrics(folder, [r for _, r in records]))
    body = "\n".join(p for p in parts if p)
    title = _e(f"{folder.name}: {first.get('command', '')}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


# The run record


def _header(record: dict[str, Any]) -> str:
    git = record.get("git") or {}
    commit = git.get("commit") or "unknown"
    revision = commit + (" (dirty: uncommitted changes)" if git.get("dirty") else "")
    machine = record.get("machine") or {}
    where = [machine.get(k) for k in ("cpu", "cuda_device", "platform") if machine.get(k)]
    rows = {
        "date": record.get("date"),
        "revision": revision,
        "machine": " · ".join(str(w) for w in where) or None,
        "seed": record.get("seed"),
    }
    return _table({k: v for k, v in rows.items() if v is not None}, css="meta")


def _configs(record: dict[str, Any]) -> list[str]:
    """A table per resolved config (model_config, train_config...), then the arguments and the
    package versions."""
    skip = {"command", "seed", "git", "machine", "date", "arguments", "versions", "report"}
    named = [(k, v) for k, v in record.items() if k not in skip and isinstance(v, dict)]
    named += [(k, record.get(k)) for k in ("arguments", "versions")]
    facts = {k: v for k, v in record.items() if k not in skip and not isinstance(v, dict)}
    if facts:
        named.insert(0, ("facts", facts))
    return [f"<h3>{_e(k)}</h3>{_table(_flat(v))}" for k, v in named if v]


# Training


def loss_figure(rows: list[dict[str, Any]]) -> Any:
    """The loss curve of training-log rows (``{"step", "loss"}``) as a matplotlib Figure, with
    a log-scale y axis when the loss spans a factor of ten or more; None without finite rows."""
    points = [(r["step"], r["loss"]) for r in rows if _finite(r.get("loss"))]
    if not points:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global backend, no GUI

    steps, losses = zip(*points, strict=True)
    fig = Figure(figsize=(7, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(steps, losses, marker="." if len(points) < 50 else None)
    low, high = min(losses), max(losses)
    if low > 0 and high / low >= 10:  # a loss that falls by decades reads best on a log axis
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="loss", title=f"training loss (last: {losses[-1]:.4g})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _loss_section(rows: list[dict[str, Any]]) -> str:
    rows = [r for r in rows if _finite(r.get("step"))]
    fig = loss_figure(rows)
    if fig is None:
        return ""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    seconds = rows[-1].get("seconds")
    took = f" in {seconds:.0f} s" if _finite(seconds) else ""
    return (
        f"<h2>Loss</h2>{_picture(buffer.getvalue(), 'loss curve', css='loss')}"
        f"<p>{len(rows)} log rows to step {rows[-1]['step']}{took}</p>"
    )


# Samples


def _outputs(folder: Path, pattern: str, deep: bool = True) -> list[Path]:
    """Files matching ``pattern`` in ``folder`` and (``deep``) its output subfolders such as
    ``images/`` (not the model's)."""
    found = sorted(folder.glob(pattern))
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and deep):
        if sub.name not in SKIP_FOLDERS and not sub.name.startswith("."):
            found += sorted(sub.glob(pattern))
    return found


def _images(folder: Path) -> str:
    # A PNG beside a WAV of the same name is its spectrogram, shown with the audio.
    pngs = [p for p in _outputs(folder, "*.png") if not p.with_suffix(".wav").is_file()]
    previews = [p for p in pngs if p.parent == folder]
    samples = [p for p in pngs if p.parent != folder]
    parts = [_figure(p, folder) for p in previews]
    if samples:
        parts.append(f"<h3>samples ({_shown(len(samples), MAX_IMAGES)})</h3>")
        parts += [_figure(p, folder) for p in samples[:MAX_IMAGES]]
    return "<h2>Images</h2>\n" + "\n".join(parts) if parts else ""


def _audio(folder: Path, *, link: str = "", facts: bool = True) -> str:
    """Players and spectrograms of the WAVs under ``folder``; ``link`` prefixes each player's
    path (for a page in another folder); without ``facts``, no table of each clip's levels."""
    wavs = _outputs(folder, "*.wav")
    if not wavs:
        return ""
    levels = {}
    for index in _outputs(folder, "samples.jsonl"):
        for row in _read_jsonl(index):
            if "wav" in row:
                levels[(index.parent / str(row["wav"])).resolve()] = row
    parts = [f"<h2>Audio ({_shown(len(wavs), MAX_SAMPLES)})</h2>"]
    for wav in wavs[:MAX_SAMPLES]:
        name = wav.relative_to(folder).as_posix()
        spectrogram = wav.with_suffix(".png")
        picture = _figure(spectrogram, folder) if spectrogram.is_file() else ""
        row = levels.get(wav.resolve(), {})
        shown = {k: v for k, v in row.items() if k not in ("wav", "png")} if facts else {}
        parts.append(
            f'<div class="clip"><p><code>{_e(name)}</code></p>'
            f'<audio controls preload="none" src="{_e(link + name)}"></audio>{picture}'
            f"{_table(_flat(shown)) if shown else ''}</div>"
        )
    return "\n".join(parts)


def _fasta(folder: Path) -> str:
    parts = []
    for path in sorted(p for ext in ("fasta", "fa", "faa") for p in folder.glob(f"*.{ext}")):
        text = _read_text(path)
        if text is None:
            continue
        lines = text.splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith(">")]
        cut = starts[MAX_SAMPLES] if len(starts) > MAX_SAMPLES else len(lines)
        shown = _shown(len(starts), MAX_SAMPLES)
        parts.append(f"<h3>{_e(path.name)} ({shown} records)</h3>")
        parts.append(f"<pre>{_e(chr(10).join(lines[:cut]))}</pre>")
    return "<h2>Sequences</h2>\n" + "\n".join(parts) if parts else ""


def _texts(folder: Path) -> str:
    parts = []
    for path in sorted(folder.glob("*.jsonl")):
        rows = [r for r in _read_jsonl(path) if isinstance(r.get("text"), str)]
        if not rows:
            continue
        parts.append(f"<h3>{_e(path.name)} ({_shown(len(rows), MAX_SAMPLES)} texts)</h3>")
        for row in rows[:MAX_SAMPLES]:
            prompt = row.get("prompt")
            label = f"<p>prompt: <code>{_e(prompt)}</code></p>" if isinstance(prompt, str) else ""
            parts.append(f"{label}<pre>{_e(row['text'])}</pre>")
    for path in sorted(folder.glob("*.txt")):
        if (text := _read_text(path)) is not None:
            parts.append(f"<h3>{_e(path.name)}</h3><pre>{_e(text)}</pre>")
    return "<h2>Texts</h2>\n" + "\n".join(parts) if parts else ""


# Metrics


def _metrics(folder: Path, records: list[dict[str, Any]]) -> str:
    """What evaluations left: a run record's ``report``, JSON files (eval results, metrics,
    accuracy), ``metrics.jsonl`` rows and ``table.md``."""
    parts = [
        f"<h3>evaluation</h3>{_table(_flat(r['report']))}"
        for r in records
        if isinstance(r.get("report"), dict)
    ]
    for path in sorted(folder.glob("*.json")):
        if path.name in NOT_METRICS or path.name.endswith(".run.json"):
            continue
        try:
            value = _read_json(path)
        except DataError:
            continue
        parts.append(f"<h3>{_e(path.name)}</h3>{_rows_table(value)}")
    for path in sorted(folder.glob("metrics.jsonl")):
        parts.append(f"<h3>{_e(path.name)}</h3>{_rows_table(_read_jsonl(path))}")
    for path in sorted(folder.glob("*.md")):
        if (text := _read_text(path)) is not None:
            parts.append(f"<h3>{_e(path.name)}</h3><pre>{_e(text)}</pre>")
    return "<h2>Metrics</h2>\n" + "\n".join(parts) if parts else ""


# Small helpers


def _e(value: Any) -> str:
    return html.escape(str(value))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _shown(total: int, cap: int) -> str:
    return f"{total}" if total <= cap else f"{cap} of {total}"


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys; other values as they are."""
    if not isinstance(value, dict):
        return {prefix or "value": value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        flat |= _flat(item, name) if isinstance(item, dict) and item else {name: item}
    return flat


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return _e(json.dumps(value, default=str)[:300])
    return _e(value)


def _table(mapping: dict[str, Any], css: str = "") -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_cell(v)}</td></tr>" for k, v in mapping.items())
    return f'<table class="{css}">{rows}</table>' if css else f"<table>{rows}</table>"


def _rows_table(value: Any) -> str:
    """A list of JSON objects as a table with a column per key; anything else as key: value."""
    if not (isinstance(value, list) and value and all(isinstance(r, dict) for r in value)):
        return _table(_flat(value))
    rows = [_flat(r) for r in value]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _picture(data: bytes, alt: str, css: str = "") -> str:
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f'<img class="{css}" alt="{_e(alt)}" src="{uri}">'


def _figure(path: Path, folder: Path) -> str:
    name = path.relative_to(folder).as_posix()
    if path.stat().st_size > MAX_BYTES:
        picture = f'<a href="{_e(name)}">{_e(name)}</a>'
    else:
        picture = _picture(path.read_bytes(), name)
    return f"<figure>{picture}<figcaption>{_e(name)}</figcaption></figure>"


def _read_text(path: Path) -> str | None:
    """A text file's contents (its start, for a large one); None when it is unreadable."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES)
    except OSError:
        return None
    if b"\0" in data:  # binary, not text
        return None
    return data.decode("utf-8", errors="replace")  # (a cut may split a character)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{path} is not readable JSON ({err}), RUN_DIR, expected JSON") from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file; other lines (a torn last line) are skipped."""
    text = _read_text(path) if path.is_file() else None
    rows: Iterable[Any] = []
    if text:
        rows = (_loads(line) for line in text.splitlines())
    return [r for r in rows if isinstance(r, dict)]


def _loads(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None
