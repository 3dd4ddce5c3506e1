"""docs/notebooks/tour.ipynb: the committed copy is executed and small, and the notebook runs
end to end (on tiny settings) in a kernel of this environment, showing each domain's result."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "tour.ipynb"
MAX_BYTES = 400_000


def outputs(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def test_the_committed_tour_is_executed_and_small():
    assert NOTEBOOK.stat().st_size < MAX_BYTES, f"{NOTEBOOK.stat().st_size:,} bytes"
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    # executed top to bottom in one kernel: counts 1..n, every cell showing something
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    assert all(cell.outputs for cell in code)
    assert not [o for o in outputs(nb) if o.output_type == "error"]
    assert not [o for o in outputs(nb) if o.get("name") == "stderr"]  # no progress bars


@pytest.mark.slow
def test_the_tour_runs_and_shows_each_domain(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    out = tmp_path / "out"
    monkeypatch.setenv("TOUR_STEPS", "2")
    monkeypatch.setenv("TOUR_OUT", str(out))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny models: threads only wait on a shared CPU
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")  # this environment's kernelspec first
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint('kernel prefix:', sys.prefix)"))
    client = NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell raises

    found = outputs(nb)
    assert not [o for o in found if o.output_type == "error"]
    stdout = "".join(o.text for o in found if o.get("name") == "stdout")
    data = [o.data for o in found if "data" in o]
    html = "".join(d.get("text/html", "") for d in data)
    assert f"kernel prefix: {sys.prefix}\n" in stdout  # the kernel ran in this environment
    assert any(d.get("image/png") for d in data)  # the image grid and the spectrograms
    assert re.search(r"<audio[^>]*>\s*<source src=\"data:audio/(x-)?wav;base64,", html)
    fasta = re.findall(r"^>sample_\d+ family=sh3 .*\n([A-Z]+)$", stdout, flags=re.M)
    assert len(fasta) == 3, stdout
    romeo = re.search(r"ROMEO:\nO, ([\s\S]{24}) night\.\n", stdout)  # [MASK*24] filled
    assert romeo and "[MASK" not in stdout, stdout
    assert "What's in a name? " in stdout
    for written in ("image/grid.png", "audio/samples/0000.wav", "protein/sh3.fasta"):
        assert (out / written).is_file(), written  # TOUR_OUT was honoured
