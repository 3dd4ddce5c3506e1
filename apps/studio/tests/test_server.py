"""The studio's endpoints as the page uses them: sample, keep and re-sample, inpaint, refine,
text infill, saving — and what the page may not do."""

from __future__ import annotations

import base64
import io
import os

import numpy as np
import pytest
from PIL import Image

from diffstudio import Models, PathRefused, inside
from diffstudio.cli import DEFAULT_HOST, build_parser, make_app


def pixels(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def sample(client, wait, **body):
    response = client.post("/api/image/sample", json={"model": "image", "steps": 3, **body})
    assert response.status_code == 202, response.text
    return wait(client, response.json()["id"])


def test_the_page_and_its_models_are_served(client):
    assert "diffuse studio" in client.get("/").text
    assert client.get("/static/studio.js").status_code == 200
    models = {m["name"]: m for m in client.get("/api/models").json()}
    assert models["image"]["domain"] == "image"
    assert models["image"]["classes"] == ["left", "top"]
    assert models["image"]["image_size"] == [8, 8]
    assert models["text"]["domain"] == "text"


def test_sample_returns_n_images_of_the_models_size(client, wait):
    result = sample(client, wait, n=3, seed=1, label=1)
    assert len(result["images"]) == 3
    assert all(pixels(url).shape == (8, 8) for url in result["images"])
    assert len({url for url in result["images"]}) == 3  # each slot its own draw


def test_a_running_job_reports_its_steps(client, wait):
    job = client.post("/api/image/sample", json={"model": "image", "n": 2, "steps": 4}).json()
    wait(client, job["id"])
    status = client.get(f"/api/jobs/{job['id']}").json()
    assert (status["step"], status["total"]) == (4, 4)


def test_resampling_keeps_the_kept_slots_bit_identical_and_redraws_the_rest(client, wait):
    first = sample(client, wait, n=4, seed=2)["images"]
    slots = [first[0], None, first[2], None]
    second = sample(client, wait, seed=3, slots=slots)
    assert second["kept"] == [True, False, True, False]
    assert second["images"][0] == first[0] and second["images"][2] == first[2]
    for i in (1, 3):
        assert not np.array_equal(pixels(second["images"][i]), pixels(first[i]))


def test_inpainting_keeps_unmasked_pixels_and_repaints_masked_ones(client, wait):
    image = sample(client, wait, n=1, seed=4)["images"][0]
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :32] = 255  # the left half, drawn at 8x the model's size as the page does
    body = {"model": "image", "steps": 3, "seed": 5, "image": image, "mask": png(mask)}
    job = client.post("/api/image/edit", json=body)
    assert job.status_code == 202, job.text
    result = wait(client, job.json()["id"])
    before, after = pixels(image).astype(int), pixels(result["images"][0]).astype(int)
    assert result["masked"] == 32
    np.testing.assert_array_equal(after[:, 4:], before[:, 4:])  # exact: uint8 -> float -> uint8
    assert np.abs(after[:, :4] - before[:, :4]).mean() > 5


def test_refining_with_a_small_strength_stays_closer_than_a_large_one(client, wait):
    image = sample(client, wait, n=1, seed=6)["images"][0]
    distances = []
    for strength in (0.2, 1.0):
        body = {"model": "image", "steps": 5, "seed": 7, "image": image, "strength": strength}
        result = wait(client, client.post("/api/image/edit", json=body).json()["id"])
        distances.append(np.abs(pixels(result["images"][0]).astype(int) - pixels(image)).mean())
    assert distances[0] < distances[1]


def test_text_infill_keeps_the_text_outside_the_mask_spans(client, wait):
    body = {"model": "text", "text": "To be, or [MASK*4] to be", "steps": 4, "seed": 1, "n": 2}
    job = client.post("/api/text/infill", json=body)
    assert job.status_code == 202, job.text
    texts = wait(client, job.json()["id"])["texts"]
    assert len(texts) == 2
    for text in texts:
        assert text.startswith("To be, or ") and text.endswith(" to be")
        assert "[MASK" not in text and len(text) == len("To be, or ") + 4 + len(" to be")


def test_requests_that_cannot_be_run_are_refused_before_queueing(client):
    assert client.post("/api/image/sample", json={"model": "nope"}).status_code == 404
    assert client.post("/api/image/sample", json={"model": "text"}).status_code == 400
    assert client.post("/api/image/sample", json={"model": "image", "label": 2}).status_code == 400
    assert client.post("/api/image/sample", json={"model": "image", "n": 65}).status_code == 400
    bad_image = {"model": "image", "image": "data:image/png;base64,AAAA"}
    assert client.post("/api/image/edit", json=bad_image).status_code == 400
    assert (
        client.post("/api/text/infill", json={"model": "text", "text": "no spans"}).status_code
        == 400
    )
    assert client.get("/api/jobs/sample-999999").status_code == 404


def test_a_failing_job_reports_its_error_and_the_worker_goes_on(client, wait):
    job = client.post("/api/image/sample", json={"model": "image", "sampler": "nope"}).json()
    for _ in range(500):
        status = client.get(f"/api/jobs/{job['id']}").json()
        if status["status"] == "error":
            break
    assert status["status"] == "error" and "nope" in status["error"]
    assert len(sample(client, wait, n=1)["images"]) == 1


# what the page may not reach


@pytest.mark.parametrize(
    "path", ["../image", "image/../../etc", "/etc", "C:\\Windows", "~/x", "a/../../b", "image\x00"]
)
def test_paths_leaving_the_roots_are_refused(model_root, path):
    with pytest.raises(PathRefused):
        inside([model_root.resolve()], path)


def test_the_page_cannot_load_a_model_from_outside_the_roots(client, model_root, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    link = model_root / "link-out"
    if not link.exists():
        os.symlink(outside, link)
    for path in ("../elsewhere", str(outside), "link-out", "image/../../elsewhere"):
        response = client.post("/api/models", json={"path": path})
        assert response.status_code == 403, (path, response.text)
    assert client.post("/api/models", json={"path": "missing"}).status_code == 404
    assert client.post("/api/models", json={"path": "image"}).status_code == 200


def test_results_are_saved_only_inside_the_output_folder(client, wait, model_root):
    result_id = client.post(
        "/api/image/sample", json={"model": "image", "n": 2, "steps": 2}
    ).json()["id"]
    wait(client, result_id)
    saved = client.post("/api/save", json={"job": result_id, "folder": "picks/today"})
    assert saved.status_code == 200, saved.text
    assert len(saved.json()["written"]) == 2
    assert len(list((model_root / "outputs" / "picks" / "today").glob("*.png"))) == 2
    for folder in ("../escaped", "/tmp/escaped", "picks/../../escaped"):
        assert (
            client.post("/api/save", json={"job": result_id, "folder": folder}).status_code == 403
        )
    assert not (model_root / "escaped").exists()


def test_the_command_line_refuses_a_model_outside_its_roots(model_root, tmp_path):
    args = build_parser().parse_args(
        ["--root", str(tmp_path), "--model", str(model_root / "image")]
    )
    with pytest.raises(PathRefused):
        make_app(args)
    models = Models([model_root])
    assert models.add(str(model_root / "image"), from_page=False).name == "image"


def test_uploads_over_the_limit_are_refused_with_413(client):
    big = "data:image/png;base64," + "A" * (4 * 1024 * 1024 + 16)
    response = client.post("/api/image/edit", json={"model": "image", "image": big})
    assert response.status_code == 413

    def chunks():  # no Content-Length: the limit holds for the bytes actually read
        yield b'{"model": "image", "image": "'
        for _ in range(5):
            yield b"A" * (1024 * 1024)
        yield b'"}'

    response = client.post(
        "/api/image/edit", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


def test_the_studio_binds_loopback_unless_told_otherwise():
    assert DEFAULT_HOST == "127.0.0.1"
    assert build_parser().parse_args([]).host == "127.0.0.1"
    assert build_parser().parse_args(["--host", "0.0.0.0"]).host == "0.0.0.0"


def test_diffuse_studio_hands_over_to_the_studio_and_diffuse_pulls_no_web_server(
    model_root, tmp_path, capsys
):
    import subprocess
    import sys

    cli = pytest.importorskip("diffuse.cli", reason="the diffuse command is not installed")
    code = cli.main(["studio", "--root", str(tmp_path), "--model", str(model_root / "image")])
    assert code == 1
    assert "outside the studio's folders" in capsys.readouterr().err
    probe = "import sys, diffuse.cli; diffuse.cli.build_parser(); print('fastapi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# audio and proteins


def test_audio_and_protein_models_are_served_with_their_conditions(client):
    models = {m["name"]: m for m in client.get("/api/models").json()}
    assert models["audio"]["domain"] == "audio"
    assert models["audio"]["classes"] == ["lo", "hi"] and models["audio"]["speakers"] == ["ann"]
    assert models["protein"]["domain"] == "protein"
    assert models["protein"]["families"] == ["kunitz", "sh3"]
    assert "masked_ancestral" in models["protein"]["samplers"]


def wav_frames(url: str) -> tuple[int, int]:
    import wave

    with wave.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as clip:
        return clip.getframerate(), clip.getnframes()


def test_audio_samples_come_as_playable_wavs_beside_their_spectrograms(client, wait):
    body = {"model": "audio", "n": 2, "steps": 3, "label": "hi"}
    job = client.post("/api/audio/sample", json=body)
    assert job.status_code == 202, job.text
    result = wait(client, job.json()["id"])
    assert [c["label"] for c in result["clips"]] == ["hi", "hi"]
    rate, frames = wav_frames(result["clips"][0]["wav"])
    assert rate == 8000 and frames > 0.5 * rate * result["seconds"]
    assert pixels(result["clips"][0]["spectrogram"]).ndim == 2


def test_redrawing_a_span_keeps_the_rest_of_the_spectrogram(client, wait):
    first = client.post("/api/audio/sample", json={"model": "audio", "n": 1, "steps": 3})
    first_id = first.json()["id"]
    before = wait(client, first_id)["clips"][0]["spectrogram"]
    seconds = client.get("/api/models").json()
    seconds = next(m for m in seconds if m["name"] == "audio")["seconds"]
    body = {"model": "audio", "job": first_id, "start": 0.0, "end": seconds / 2, "steps": 3}
    body["seed"] = 5
    job = client.post("/api/audio/redraw", json=body)
    assert job.status_code == 202, job.text
    result = wait(client, job.json()["id"])
    kept = result["kept_frames"]
    a, b = pixels(before), pixels(result["clips"][0]["spectrogram"])
    scale = a.shape[1] // 16  # 16 frames, each `scale` pixels wide
    assert 0 < kept < 16
    assert np.array_equal(a[:, -kept * scale :], b[:, -kept * scale :])  # the kept frames
    assert not np.array_equal(a, b)  # and the span was drawn again
    bad = client.post("/api/audio/redraw", json={**body, "start": 0.1, "end": 0.05})
    assert bad.status_code == 400 and "start < end" in bad.json()["detail"]
    assert client.post("/api/audio/redraw", json={**body, "job": "nope"}).status_code == 404
    wrong = client.post("/api/audio/sample", json={"model": "audio", "label": "mid"})
    assert wrong.status_code == 400 and "'mid'" in wrong.json()["detail"]


def test_protein_motif_scaffolding_keeps_the_motif_at_its_positions(client, wait):
    body = {"model": "protein", "n": 3, "family": "sh3", "length": 14, "motif": "3-6:WYKL"}
    job = client.post("/api/protein/sample", json=body)
    assert job.status_code == 202, job.text
    result = wait(client, job.json()["id"])
    sequences = [row["sequence"] for row in result["sequences"]]
    assert len(sequences) == 3 and all(len(s) == 14 and s[2:6] == "WYKL" for s in sequences)
    assert result["fasta"].count(">") == 3
    saved = client.post("/api/save", json={"job": job.json()["id"], "folder": "proteins"})
    assert saved.json()["written"][0].endswith(".fasta")
    bad = client.post("/api/protein/sample", json={"model": "protein", "motif": "9-3:AA"})
    assert bad.status_code == 400
    unknown = client.post("/api/protein/sample", json={"model": "protein", "family": "x"})
    assert unknown.status_code == 400 and "'x'" in unknown.json()["detail"]
