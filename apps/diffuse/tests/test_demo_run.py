"""`diffuse demo`: the main job's page, with tiny step counts."""

import json

import pytest

from diffuse.cli import main
from diffuse.demo_run import PLANS, highlight_infill, plan_for


def test_highlight_infill_marks_the_filled_spans():
    html = highlight_infill("To be, or [MASK*3] to be <x>", "To be, or not to be <x>")
    assert html == "To be, or <mark>not</mark> to be &lt;x&gt;"
    assert highlight_infill("a [MASK*2] b", "something else") == "something else"


def test_unknown_domain_is_one_line_usage_error(tmp_path, capsys):
    assert main(["demo", "--domains", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]


def test_the_plans_are_fixed_step_counts_that_steps_replaces():
    assert plan_for("image", quick=False) == PLANS["full"]["image"]
    quick = plan_for("image", quick=True, steps=3)
    assert quick["steps"] == quick["judge"] == 3 and quick["preset"] == "tiny"
    # quick fits its 3 minutes, the default its 10, by the phases' measured seconds
    assert sum(p["s"] for p in PLANS["quick"].values()) <= 180
    assert sum(p["s"] for p in PLANS["full"].values()) <= 600


@pytest.mark.slow
def test_quick_demo_writes_a_page_of_images_and_infilled_texts(tmp_path):
    argv = ["demo", "--quick", "--domains", "image,text", "--steps", "1", "--out", str(tmp_path)]
    assert main(argv) == 0
    page = (tmp_path / "index.html").read_text()
    assert "one column per class" in page and "samples.png" in page
    assert "judge agrees" in page and "FID (50 samples, demo judge)" in page
    assert page.count("<mark>") >= 4
    assert page.count('alt="loss curve"') == 2
    assert "<h2>Metrics</h2>" in page and "final loss" in page
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["plan"] == "quick" and results["command"].startswith("diffuse demo")
    assert set(results["domains"]) == {"image", "text"} and "avx2" in results["machine"]
    assert results["domains"]["image"]["judge agrees"] >= 0 and results["seconds"] > 0


@pytest.mark.slow
def test_protein_demo_judges_each_sampled_family(tmp_path):
    argv = ["demo", "--domains", "protein", "--steps", "1", "--out", str(tmp_path)]
    assert main(argv) == 0
    page = (tmp_path / "index.html").read_text()
    assert "judged family" in page and "NLL (nats/residue)" in page and "judge agrees" in page
    assert "&gt;kunitz_0" in page  # the FASTA, one id per sample


@pytest.mark.slow
def test_audio_demo_plays_each_digit_beside_its_spectrogram(tmp_path):
    argv = ["demo", "--quick", "--domains", "audio", "--steps", "1", "--out", str(tmp_path)]
    assert main(argv) == 0
    page = (tmp_path / "index.html").read_text()
    players = page.count('<audio controls preload="none" src="audio/samples/')
    assert players == 10 and (tmp_path / "audio" / "samples" / "0000_0.wav").is_file()
    assert page.count('src="data:image/png') >= 10 + 1  # the spectrograms and the loss curve
    assert "judge agrees" in page and "level.peak" not in page
