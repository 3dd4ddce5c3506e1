"""Fixtures for the studio's tests: tiny untrained models saved as folders under one root (the
studio's guarantees — kept slots, kept pixels, kept text — hold for any weights), an app on
them, and a real uvicorn server on a free loopback port."""

from __future__ import annotations

import socket
import string
import threading
import time

import pytest
import torch

from diffstudio import Limits, Models, create_app


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; two threads spin against each other here
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def model_root(tmp_path_factory):
    """root/image: an 8x8 grey 2-class U-Net; root/text: a 32-token masked LM on characters;
    root/audio: a 16-frame spectrogram U-Net (classes lo, hi; speaker ann); root/protein: a
    tiny denoiser of two families (kunitz, sh3) of 12-15 residues."""
    from diffimage import ImagePipeline, build_model
    from difftext.model import save_text_model
    from difftext.tokenizer import train_char_tokenizer
    from difftext.training import build_model as build_text_model

    root = tmp_path_factory.mktemp("studio-root")
    torch.manual_seed(0)
    image = build_model(
        "tiny", channels=1, image_size=(8, 8), num_classes=2, class_names=("left", "top")
    )
    ImagePipeline(image).save_pretrained(root / "image")
    tokenizer = train_char_tokenizer([string.printable])
    save_text_model(
        build_text_model("diffusion", tokenizer, 32, preset="tiny", seed=0), root / "text"
    )
    from diffaudio.model import AudioUNet, audio_unet_config
    from diffaudio.pipeline import AudioPipeline
    from diffaudio.spectrogram import SpectrogramConfig

    names = {"label_names": ("lo", "hi"), "speaker_names": ("ann",)}
    audio = AudioUNet(audio_unet_config("tiny", SpectrogramConfig(frames=16), **names))
    AudioPipeline(audio).save_pretrained(root / "audio")
    from diffcore.io import save_pretrained
    from diffprotein.data import ProteinRecord
    from diffprotein.model import load_preset
    from diffprotein.training import build_denoiser

    records = [ProteinRecord(f"k{i}", "MKVLAAGWMKVLAAGW"[: 12 + i], "kunitz") for i in range(4)]
    records += [ProteinRecord(f"s{i}", "GSHMCCPQRTGSHMCC"[: 12 + i], "sh3") for i in range(4)]
    save_pretrained(build_denoiser(records, load_preset("tiny")), root / "protein")
    return root


def make_app(root, **limits):
    models = Models([root])
    for name in ("image", "text", "audio", "protein"):
        models.add(name)
    return create_app(models, out_dir=root / "outputs", limits=Limits(**limits))


@pytest.fixture
def client(model_root):
    from fastapi.testclient import TestClient

    with TestClient(make_app(model_root)) as client:
        yield client


def _wait(client, job_id, timeout=60.0):
    """Poll a job until it is done; its result (fails the test on an error or a timeout)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] == "done":
            return job["result"]
        assert job["status"] != "error", job["error"]
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


@pytest.fixture
def wait():
    """``wait(client, job_id)``: poll a job until it is done; its result."""
    return _wait


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a thread of this process."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        end = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < end, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def live_server(model_root):
    def start(**limits):
        return LiveServer(make_app(model_root, **limits))

    return start
