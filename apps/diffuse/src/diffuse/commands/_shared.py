"""Helpers every domain's commands share: device choice, error exit, the run's git revision."""

from __future__ import annotations

import subprocess
import sys


def resolve_device(name: str | None) -> str:
    """``name`` as given, or for "auto" / None: "cuda" when available, else "cpu"."""
    if name and name != "auto":
        return name
    import torch  # late: `diffuse --help` should not pay for importing torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def fail(message: str) -> int:
    """Print ``error: message`` to stderr and return the exit status for bad input (2)."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def git_revision() -> str | None:
    """The checkout's HEAD commit, recorded with each run; None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
