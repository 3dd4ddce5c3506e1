"""`diffuse report RUN_DIR`: one self-contained HTML page per run folder, written by every
training command when it ends and on demand for any training or sampling folder."""

import argparse
import base64
import json
from html.parser import HTMLParser

import pytest
import torch

from diffuse import kit, report
from diffuse.cli import main
from diffuse.report import REPORT_NAME, loss_figure, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """The parts of a page the tests look at: every start tag with its attributes, and the
    text inside each element, keyed by the innermost open tag."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: dict[str, list[str]] = {}
        self._open: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("img", "meta", "br"):  # void elements never close
            self._open.append(tag)

    def handle_endtag(self, tag):
        if tag in self._open:
            del self._open[len(self._open) - 1 - self._open[::-1].index(tag) :]

    def handle_data(self, data):
        if self._open:
            self.text.setdefault(self._open[-1], []).append(data)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def pictures(self) -> dict[str, bytes]:
        """alt text -> the bytes of each embedded PNG."""
        prefix = "data:image/png;base64,"
        found = {}
        for img in self.all("img"):
            assert img["src"].startswith(prefix), img["src"][:40]  # embedded, not linked
            found[img["alt"]] = base64.b64decode(img["src"][len(prefix) :])
        return found


def read_page(folder) -> Page:
    return Page((folder / REPORT_NAME).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def image_run(image_folder, tmp_path_factory):
    """A tiny image model trained through the CLI on two classes of 8x8 grey images."""
    out = tmp_path_factory.mktemp("run")
    argv = ["train", "image", "--data", str(image_folder), "--preset", "tiny", "--steps", "6"]
    argv += ["--batch-size", "8", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    return out


def test_a_training_run_ends_with_its_report(image_run):
    page = read_page(image_run)
    record = json.loads((image_run / "run.json").read_text())
    (h1,) = page.text["h1"]
    assert h1.startswith("diffuse train image --data") and "--steps 6" in h1
    cells = page.text["td"]
    assert record["git"]["commit"] in "".join(cells)  # the revision
    assert "train_config" in page.text["h3"] and "model_config" in page.text["h3"]
    assert "preset" in cells and "tiny" in cells  # the arguments as a table
    pictures = page.pictures()
    loss = pictures["loss curve"]
    assert loss.startswith(PNG_MAGIC) and len(loss) > 1000
    assert pictures["samples.png"] == (image_run / "samples.png").read_bytes()
    assert not any(name.startswith(("final", "checkpoints")) for name in pictures)


def test_a_sampling_folder_shows_its_grid_and_sample_images_up_to_a_cap(
    image_run, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "sampled"
    argv = ["sample", "image", "--model", str(image_run / "final"), "--n", "3", "--steps", "2"]
    assert main([*argv, "--out", str(out), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / REPORT_NAME)
    pictures = read_page(out).pictures()
    samples = sorted(p.relative_to(out).as_posix() for p in (out / "images").glob("*.png"))
    assert len(samples) == 3 and set(samples) < set(pictures) and "grid.png" in pictures
    assert "loss curve" not in pictures  # a sampling folder has no training log
    monkeypatch.setattr(report, "MAX_IMAGES", 2)
    page = Page(write_report(out).read_text())
    assert set(page.pictures()) == {"grid.png", *samples[:2]}
    assert "samples (2 of 3)" in page.text["h3"]


def test_a_text_sampling_folder_shows_its_texts_escaped(tmp_path):
    args = argparse.Namespace(argv=["sample", "text", "--seed", "3"], seed=3, n=2)
    kit.write_run(tmp_path / "samples.jsonl", args, beside=True, sampling={"steps": 8})
    texts = ["a plain line", "<script>alert('x')</script> & more"]
    rows = [{"index": i, "text": t, "prompt": "p<"} for i, t in enumerate(texts)]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_report(tmp_path)
    raw = (tmp_path / REPORT_NAME).read_text()
    page = Page(raw)
    assert not page.all("script")  # the sample is text on the page, not a script
    assert page.text["pre"] == texts
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in raw
    assert page.text["h1"] == ["diffuse sample text --seed 3"]
    assert "3" in page.text["td"]  # the seed


def test_a_text_training_log_gives_a_loss_curve_and_its_metrics(tmp_path):
    kit.write_run(tmp_path, argparse.Namespace(argv=["train", "text"], seed=0))
    log = [{"step": s, "loss": 8 / s, "lr": 1e-3, "seconds": s / 10} for s in (1, 2, 4, 8)]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    metric = {"step": 8, "final": True, "bits_per_token": 3.25}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(metric) + "\n")
    page = Page(write_report(tmp_path).read_text())
    assert page.pictures()["loss curve"].startswith(PNG_MAGIC)
    assert "bits_per_token" in page.text["th"] and "3.25" in page.text["td"]


def test_the_loss_axis_is_logarithmic_only_when_the_loss_spans_a_decade():
    falling = [{"step": s, "loss": 10.0 / s**2} for s in range(1, 11)]
    flat = [{"step": s, "loss": 1.0 - s / 100} for s in range(1, 11)]
    assert loss_figure(falling).axes[0].get_yscale() == "log"
    assert loss_figure(flat).axes[0].get_yscale() == "linear"
    assert loss_figure([{"step": 1, "loss": float("nan")}]) is None


def test_an_audio_sampling_folder_links_its_wavs_and_embeds_their_spectrograms(tmp_path):
    from diffaudio.outputs import save_outputs
    from diffaudio.spectrogram import SpectrogramConfig

    config = SpectrogramConfig()
    waves = 0.5 * torch.sin(torch.arange(2, 800).float()[None] / torch.tensor([[3.0], [7.0]]))
    specs = torch.rand(2, 1, config.n_mels, 8) * 2 - 1
    records = [{"label": "<lo>"}, {"label": "hi"}]
    save_outputs(tmp_path, waves, specs, config, names=["a", "b"], records=records)
    kit.write_run(tmp_path, argparse.Namespace(argv=["sample", "audio"], seed=1))
    page = Page(write_report(tmp_path).read_text())
    sources = [a["src"] for a in page.all("audio")]
    assert sources == ["a.wav", "b.wav"] and all((tmp_path / s).is_file() for s in sources)
    pictures = page.pictures()
    assert pictures["a.png"] == (tmp_path / "a.png").read_bytes()  # beside its clip
    assert "<lo>" in page.text["td"] and "level.peak" in page.text["td"]  # escaped, parsed back


def test_a_folder_without_a_run_record_is_one_error_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no run here")
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diffuse: error: no run.json in ")
    assert not (tmp_path / REPORT_NAME).exists()
    assert main(["report", str(tmp_path / "missing")]) == 1
