"""What a benchmark leaves for others to rescore: its samples in plain formats and
``results.json`` (the command, the machine, the precision, the date and the figures) in
``docs/results/<domain>/``, committed beside the docs' current table."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from diffcore.training import resolve_precision
from diffuse.kit.record import git_revision, machine, versions
from research._utils import REPO_ROOT

RESULTS = REPO_ROOT / "docs" / "results"


def results_dir(domain: str, folder: str | Path | None = None) -> Path:
    """``folder``, or ``docs/results/<domain>/`` of this checkout; created empty of samples."""
    out = Path(folder) if folder is not None else RESULTS / domain
    out.mkdir(parents=True, exist_ok=True)
    return out


def sample_files(folder: Path) -> list[str]:
    """The files a study left in ``folder`` (relative, sorted), its own table and record aside."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return [f for f in files if not f.endswith(("results.json", "table.md"))]


def write_results(
    folder: Path,
    *,
    figures: dict[str, Any],
    precision: str,
    device: str = "cpu",
    samples: list[str],
    settings: dict[str, Any] | None = None,
) -> Path:
    """Write ``folder/results.json``: the command as run, the figures (as printed), the
    precision (a training precision as ``TrainConfig`` resolves it, or "fp64" for studies), the sample files (relative to ``folder``), the machine (CPU model and flags:
    AVX-512 / AVX512-BF16 or AVX2 only), package versions, git revision and the date."""
    module = sys.argv[0].split("/src/")[-1].removesuffix(".py").replace("/", ".")
    record = {
        "command": "uv run python -m " + shlex.join([module, *sys.argv[1:]]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "precision": precision if precision == "fp64" else resolve_precision(precision, device),
        "figures": figures,
        "samples": samples,
        "settings": settings or {},
        "machine": machine(),
        "versions": versions(),
        "git": git_revision(),
    }
    path = folder / "results.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path
