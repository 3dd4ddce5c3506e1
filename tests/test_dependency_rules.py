"""The dependency rule (STYLE.md): diffcore imports no sibling; a domain package imports only
diffcore among the workspace packages; each package imports only what its pyproject declares."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent for p in (ROOT / "packages").glob("*/pyproject.toml"))
WORKSPACE = {p.name for p in PACKAGES} | {
    p.parent.name for p in (ROOT / "apps").glob("*/pyproject.toml")
}
# import name -> distribution name, where they differ
DISTRIBUTION = {"Bio": "biopython", "PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn"}
# torch ships these itself on Linux
PROVIDED_BY = {"triton": "torch"}


def imported_top_levels(package_dir: Path) -> set[str]:
    names = set()
    for path in (package_dir / "src").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def declared(package_dir: Path) -> set[str]:
    meta = tomllib.loads((package_dir / "pyproject.toml").read_text())["project"]
    deps = set()
    for spec in meta.get("dependencies", []):
        name = spec.split(";")[0]
        for sep in "=<>!~[ ":
            name = name.split(sep)[0]
        deps.add(name.strip().lower())
    return deps


@pytest.mark.parametrize("package_dir", PACKAGES, ids=lambda p: p.name)
def test_packages_import_only_what_they_declare(package_dir):
    own = package_dir.name
    third_party = imported_top_levels(package_dir) - set(sys.stdlib_module_names) - {own}
    deps = declared(package_dir)
    for name in sorted(third_party):
        dist = PROVIDED_BY.get(name, DISTRIBUTION.get(name, name)).lower()
        if name in WORKSPACE:
            allowed = own != "diffcore" and name == "diffcore"
            assert allowed, (
                f"{own} imports workspace package {name}: domain packages import only diffcore"
            )
        assert dist in deps, (
            f"{own} imports {name} but does not declare {dist} in its pyproject.toml"
        )


def test_diffcore_stays_free_of_domain_stacks():
    deps = declared(ROOT / "packages" / "diffcore")
    assert {"torch", "einops"} <= deps
    assert not deps & {"torchaudio", "librosa", "biopython", "transformers", "datasets"}
