"""The network guard of the root conftest.py: tests cannot leave this machine."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REMOTE = ("93.184.216.34", 80)  # example.com's old address: any non-loopback host


def test_a_connection_to_another_machine_fails_with_the_guards_error_at_once(no_network):
    start = time.monotonic()
    with socket.socket() as s, pytest.raises(no_network.error, match=r"93\.184\.216\.34:80"):
        s.connect(REMOTE)
    with pytest.raises(no_network.error, match="must not use the network"):
        socket.create_connection(REMOTE, timeout=30)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(no_network.error):
        s.sendto(b"x", REMOTE)
    with pytest.raises(no_network.error, match="name lookup of example.com"):
        socket.getaddrinfo("example.com", 443)
    assert time.monotonic() - start < 1  # refused before any packet: no connect timeout
    assert len(no_network.attempts) == 4
    no_network.attempts.clear()  # provoked on purpose: do not fail this test


SWALLOWING_TEST = """
import socket

def test_falls_back_quietly():
    try:
        socket.create_connection(("93.184.216.34", 80), timeout=30)
    except Exception:
        pass  # what a client with an offline fallback does
"""


def test_an_attempt_the_code_swallows_still_fails_the_test(tmp_path):
    (tmp_path / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    (tmp_path / "test_swallow.py").write_text(SWALLOWING_TEST)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_swallow.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout
    assert "1 passed, 1 error" in run.stdout
    assert "the test tried to use the network: connection to 93.184.216.34:80" in run.stdout


def test_loopback_and_unix_sockets_work(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        replies: list[bytes] = []

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                replies.append(conn.recv(5))
                conn.sendall(b"pong")

        thread = threading.Thread(target=answer)
        thread.start()
        with socket.create_connection(("localhost", port), timeout=10) as client:
            client.sendall(b"ping!")
            assert client.recv(4) == b"pong"
        thread.join(timeout=10)
    assert replies == [b"ping!"]
    if hasattr(socket, "AF_UNIX"):
        a, b = socket.socketpair(socket.AF_UNIX)
        with a, b:
            a.sendall(b"ok")
            assert b.recv(2) == b"ok"


def test_local_tables_load_without_the_datasets_download_count_request(
    tmp_path, no_network, monkeypatch
):
    """`datasets` sends a "download count" request to S3 for every load_dataset call, even of a
    local file, unless told otherwise; each domain's reader tells it (here with the Hub online)."""
    import datasets
    import huggingface_hub
    from PIL import Image

    from diffimage.data import load_images
    from difftext.data import load_documents

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", True)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    images = [Image.new("L", (8, 8), 100), Image.new("L", (8, 8), 200)]
    datasets.Dataset.from_dict({"image": images, "label": [0, 1]}, features=features).to_parquet(
        tmp_path / "train.parquet"
    )
    load_images(tmp_path / "train.parquet")
    (tmp_path / "a.csv").write_text("text\nhello\n")
    load_documents(tmp_path / "a.csv")
    assert no_network.attempts == []
