"""Small helpers shared by the studies."""

from __future__ import annotations

import argparse
from pathlib import Path

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
