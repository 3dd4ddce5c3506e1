"""Small helpers shared by the studies."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

# apps/research/src/research/_utils.py -> the checkout's root (the workspace installs this
# package editable, so the file stays in the checkout)
REPO_ROOT = Path(__file__).resolve().parents[4]
# the real data sets beside the checkout (../shared/data, see its README.md)
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def study_parser(module: str, doc: str) -> argparse.ArgumentParser:
    """The argument parser of the study ``module`` (its ``__spec__.name``) documented by ``doc``:
    usage names its ``python -m`` command, the description is the docstring's first line and
    the epilog its example commands (the docstring's indented lines)."""
    examples = [line for line in doc.splitlines() if line.startswith("    ")]
    return argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=doc.splitlines()[0],
        epilog="examples:\n" + "\n".join(examples) if examples else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def train_fresh(
    domain: str, data: str, out: Path, steps: int, args: Any, *extra: str, preset: str = ""
) -> Path:
    """Train a ``domain`` model on ``data`` for exactly ``steps`` optimiser steps with the
    study's ``--preset`` (or ``preset``), ``--batch-size`` and ``--seed`` plus ``extra``
    arguments of ``diffuse train``, into ``out``; returns its ``final/`` folder. What an earlier
    run left in ``out`` is deleted first (equal steps: never resume another run), unless the
    study's ``--reuse`` is set and that run finished."""
    from diffuse.demo_run import run_command

    final = out / "final"
    if getattr(args, "reuse", False) and final.is_dir():
        return final
    shutil.rmtree(out, ignore_errors=True)
    quiet = ("--no-preview",) if domain == "image" else ()  # the studies draw their own samples
    run_command(
        *("train", domain, "--data", data, "--preset", preset or args.preset, *quiet),
        *("--steps", str(steps), "--batch-size", str(args.batch_size), "--seed", str(args.seed)),
        *extra,
        *("--out", str(out)),
    )
    return final
