"""`torchrun --nproc-per-node 2 -m diffuse.cli train ...` (DDP, gloo on CPU) trains the weights
one process trains with the same global batch (--grad-accum 2), and only rank 0 writes and
speaks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffuse.cli import main

SEED = ["--seed", "3", "--device", "cpu"]


def torchrun(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node 2 --standalone -m diffuse.cli argv`` on one thread a rank."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    cmd += ["--standalone", "-m", "diffuse.cli", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def assert_close_weights(a: Path, b: Path, atol: float = 2e-5) -> None:
    x, y = load_file(a), load_file(b)
    assert x.keys() == y.keys()
    for k in x:
        # Averaging the ranks' gradients instead of accumulating them in one process changes
        # only the float32 summation order.
        torch.testing.assert_close(x[k], y[k], rtol=0, atol=atol, msg=k)


def no_temporaries(folder: Path) -> bool:
    return not any(p.name.startswith(".tmp-") for p in folder.rglob("*"))


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def image_argv(folder: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("train", "image", "--data", str(folder), "--preset", "tiny", "--steps", "4"),
        *("--batch-size", "4", "--checkpoint-every", "2", "--out", str(out), *SEED, *extra),
    ]


@pytest.mark.slow
def test_two_processes_train_the_image_model_one_process_trains_with_grad_accum_2(
    image_folder, tmp_path
):
    ddp = torchrun(*image_argv(image_folder, tmp_path / "ddp"))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert main(image_argv(image_folder, tmp_path / "one", "--grad-accum", "2")) == 0
    assert_close_weights(
        tmp_path / "ddp" / "final" / "model.safetensors",
        tmp_path / "one" / "final" / "model.safetensors",
    )
    # Rank 1's half of the global batch counted: half the batch in one process trains others.
    assert main(image_argv(image_folder, tmp_path / "half")) == 0
    half = load_file(tmp_path / "half" / "final" / "model.safetensors")
    both = load_file(tmp_path / "ddp" / "final" / "model.safetensors")
    assert any((half[k] - both[k]).abs().max() > 1e-4 for k in half)

    # Rank 0 alone wrote the record, the preview and the checkpoints, and printed.
    run = tmp_path / "ddp"
    assert (run / "run.json").is_file() and (run / "samples.png").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000002", "step_000004"]
    assert no_temporaries(run)
    assert ddp.stdout.count("trained to step 4") == 1, ddp.stdout


def write_corpus(path: Path) -> Path:
    """About 6 kB of made-up verse: blocks enough for a tiny text model."""
    words = ["the", "king", "and", "queen", "of", "dust", "ride", "out", "at", "dawn", "to"]
    words += ["find", "a", "quiet", "sea"]
    lines = [" ".join(words[(3 * i + j) % len(words)] for j in range(7)) for i in range(120)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_two_processes_train_the_text_model_one_process_trains_with_grad_accum_2(
    tmp_path, monkeypatch
):
    import datasets

    # datasets' "text" loader pings S3 to count its loads unless told not to (a difftext issue)
    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False)
    corpus = write_corpus(tmp_path / "verse.txt")

    def argv(out: Path, *extra: str) -> list[str]:
        return [
            *("train", "text", str(corpus), "--preset", "tiny", "--block-size", "32"),
            *("--steps", "4", "--batch-size", "4", "--eval-every", "0", "--log-every", "2"),
            *("--checkpoint-every", "2", "--out", str(out), *SEED, *extra),
        ]

    ddp = torchrun(*argv(tmp_path / "ddp"))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert main(argv(tmp_path / "one", "--grad-accum", "2")) == 0
    assert_close_weights(
        tmp_path / "ddp" / "model" / "model.safetensors",
        tmp_path / "one" / "model" / "model.safetensors",
    )
    run = tmp_path / "ddp"
    assert (run / "tokenizer").is_dir() and (run / "metrics.jsonl").is_file()
    assert no_temporaries(run)
    assert ddp.stdout.count("validation NLL") == 1, ddp.stdout  # rank 0 validates and reports


def test_minutes_is_refused_with_several_processes(image_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")  # RANK unset: this is rank 0
    assert main(image_argv(image_folder, tmp_path / "run", "--minutes", "1")) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffuse: error: --minutes under torchrun (WORLD_SIZE=2)"), err
    assert not (tmp_path / "run" / "run.json").exists()


@pytest.mark.slow
def test_minutes_is_refused_under_torchrun(image_folder, tmp_path):
    done = torchrun(*image_argv(image_folder, tmp_path / "run", "--minutes", "1"))
    assert done.returncode != 0
    assert "diffuse: error: --minutes under torchrun (WORLD_SIZE=2), --minutes" in done.stderr
    assert not (tmp_path / "run" / "run.json").exists()
