"""The README's Python snippets run as written (in a temporary folder, offline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_the_engine_snippet_and_one_per_domain():
    imports = " ".join(BLOCKS)
    for package in ("diffcore", "diffimage", "diffaudio", "diffprotein", "difftext"):
        assert f"from {package}" in imports, package


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_a_readme_snippet_runs(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(block, str(README), "exec"), {"__name__": "readme"})
