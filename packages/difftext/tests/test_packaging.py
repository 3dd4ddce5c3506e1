"""difftext installs without any other domain's stack."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not on PATH")
def test_uv_export_of_difftext_pulls_no_audio_or_biology_packages():
    out = subprocess.run(
        ["uv", "export", "--package", "difftext", "--frozen", "--no-hashes", "--no-dev"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    names = {
        re.split(r"[=<>;\s\[]", line)[0].lower()
        for line in out.splitlines()
        if line and not line.startswith(("#", " ", "-e"))
    }
    assert {"transformers", "tokenizers", "datasets", "torch"} <= names
    assert not names & {"torchaudio", "librosa", "soundfile", "biopython"}
