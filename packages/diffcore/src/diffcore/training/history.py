"""The loss history of a run: ``out_dir/train_log.jsonl``, one JSON object per log row
(``{"step", "loss", "lr", "seconds"}``), appended by rank 0 as the loop logs. A resumed run
first drops the rows past the step it resumes from, so the file always describes the run
whose checkpoints sit beside it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from diffcore.io import temp_prefix

TRAIN_LOG = "train_log.jsonl"


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a training log (none when the file is missing). A line that is not a JSON
    object with an integer ``step`` (the torn last line of a killed run) is skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def trim_log(path: str | os.PathLike, step: int) -> float:
    """Keep only the rows of ``path`` up to ``step`` (the step a run resumes from; 0 for a fresh
    start) and return the ``seconds`` of the last row kept (0.0 when none), from which the
    resumed run's clock continues. The file is replaced atomically."""
    path = Path(path)
    if not path.exists():
        return 0.0
    kept = [row for row in read_log(path) if row["step"] <= step]
    tmp = path.with_name(temp_prefix(path.name) + "log")  # swept if a kill leaves it
    tmp.write_text("".join(json.dumps(row) + "\n" for row in kept), encoding="utf-8")
    os.replace(tmp, path)
    seconds = kept[-1].get("seconds") if kept else None
    return float(seconds) if isinstance(seconds, int | float) else 0.0


def append_row(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one row to the log (a line is written whole with one ``write`` call)."""
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
