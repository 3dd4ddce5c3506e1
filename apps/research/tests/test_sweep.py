"""The cross-domain sweep's table and its refusal to run without a finished demo."""

import sys

import pytest

from research.cross_domain import sweep


def test_the_table_has_a_line_per_domain_and_sampler_and_a_column_per_budget():
    rows = [
        {"domain": "image", "sampler": s, "calls": c, "FID": 10.0 / c, "judge accuracy": 0.5}
        for s in sweep.SAMPLERS["image"]
        for c in (5, 10)
    ] + [{"domain": "text", "sampler": "confidence", "calls": 5, "word share": 0.75}]
    lines = sweep.format_table(rows).splitlines()
    assert lines[0] == "| domain | score | sampler | 5 calls | 10 calls |"
    assert "| image | FID | heun | 2 | 1 |" in lines
    assert "| text | word share | confidence | 0.75 |  |" in lines  # a missing cell stays empty
    assert len(lines) == 2 + len(sweep.SAMPLERS["image"]) + len(sweep.SAMPLERS["text"])


def test_without_a_finished_demo_it_says_which_command_to_run_first(tmp_path, monkeypatch):
    argv = ["sweep", "--demo", str(tmp_path), "--results", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match="no trained image, audio, protein, text model; run"):
        sweep.main()
    assert not (tmp_path / "out").exists()
