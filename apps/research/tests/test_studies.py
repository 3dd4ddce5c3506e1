"""Every study imports (so an API change that breaks one fails here, not hours into a run), keeps
its work in ``main()``, documents its ``python -m`` command, and is listed in the README; the
cheapest ones also print their ``--help`` through ``python -m``."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"
# every module of the package but its helpers (_utils) and __init__ files, found on disk so that
# a package that does not import still lists its studies, each failing on its own
STUDIES = sorted(
    ".".join(path.relative_to(SOURCE).with_suffix("").parts)
    for path in (SOURCE / "research").rglob("*.py")
    if not path.name.startswith("_")
)
# each subprocess imports torch (~3 s): the studies with the lightest imports, one of which
# imports another study's helpers (research.protein.benchmark)
CHEAPEST = ["research.cross_domain.sampler_study", "research.protein.family_check"]
README = SOURCE.parent / "README.md"


def source_of(name: str) -> str:
    return SOURCE.joinpath(*name.split(".")).with_suffix(".py").read_text()


def test_there_is_a_study_per_domain_and_for_the_engine():
    folders = {name.split(".")[1] for name in STUDIES}
    assert folders == {"image", "text", "audio", "protein", "cross_domain"}


@pytest.mark.parametrize("name", STUDIES)
def test_every_study_imports_and_keeps_its_work_in_main(name):
    module = importlib.import_module(name)
    assert callable(module.main), f"{name} has no main()"


@pytest.mark.parametrize("name", STUDIES)
def test_every_study_documents_its_python_m_command(name):
    doc = ast.get_docstring(ast.parse(source_of(name)))
    assert f"python -m {name}" in doc, f"{name}: its docstring gives no `python -m {name}` command"


@pytest.mark.parametrize("name", STUDIES)
def test_the_readme_lists_every_study(name):
    assert f"python -m {name}" in README.read_text(), f"{README} has no command for {name}"


@pytest.mark.parametrize("name", STUDIES)
def test_no_study_edits_sys_path(name):
    assert "sys.path" not in source_of(name), (
        f"{name}: import shared code as research.<domain>.<module>"
    )


@pytest.mark.parametrize("name", CHEAPEST)
def test_the_cheapest_studies_print_their_help_through_python_m(name):
    done = subprocess.run(
        [sys.executable, "-m", name, "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m {name}")
