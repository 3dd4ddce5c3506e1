"""kill -9 at random moments: `diffuse train` with a checkpoint every step, killed again and
again (about half the kills timed to land while a checkpoint is being written), resumes each
time, and its final weights equal an uninterrupted run's bit for bit."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

KILLS = 4  # per domain; even-numbered kills wait for a checkpoint write, odd ones for a moment
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def temporaries(run: Path) -> set[str]:
    """Names of the temporary folders in ``run`` and its checkpoints (an atomic write running,
    or one a kill left behind)."""
    names = set()
    for folder in (run, run / "checkpoints"):
        if folder.is_dir():
            with os.scandir(folder) as entries:
                names |= {e.name for e in entries if e.name.startswith(".tmp-")}
    return names


def checkpoints(run: Path) -> int:
    folder = run / "checkpoints"
    if not folder.is_dir():
        return 0
    with os.scandir(folder) as entries:
        return sum(e.name.startswith("step_") for e in entries)


def start(argv: list[str], log: Path) -> subprocess.Popen:
    with log.open("a") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "diffuse.cli", *argv],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def kill_at_a_random_moment(proc: subprocess.Popen, run: Path, *, in_write: bool, rng) -> str:
    """SIGKILL ``proc``: as soon as a new temporary folder appears (``in_write``), or a random
    few milliseconds after 0 to 2 more checkpoints appeared. Returns "write" for a kill that
    left a write unfinished (its temporary folder stays), "kill" for another, "" if the run
    finished first."""
    before, seen = checkpoints(run), temporaries(run)  # a killed run's leftovers are not news
    wanted, delay = before + rng.randint(0, 2), rng.uniform(0.0, 0.03)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if in_write and temporaries(run) - seen or not in_write and checkpoints(run) >= wanted:
            time.sleep(0.0 if in_write else delay)
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.001)
    proc.wait(timeout=60)
    if proc.returncode != -signal.SIGKILL:
        return ""
    return "write" if temporaries(run) - seen else "kill"


def train_through_kills(argv: list[str], run: Path, rng: random.Random) -> list[str]:
    """Run ``argv`` (training into ``run``), killing it ``KILLS`` times, then let it finish;
    return the kills that landed before it finished ("write" or "kill" each)."""
    log, kills = run.with_suffix(".log"), []
    for _ in range(3 * KILLS):
        proc = start(argv, log)
        kill = len(kills) < KILLS and kill_at_a_random_moment(
            proc, run, in_write=len(kills) % 2 == 0, rng=rng
        )
        if kill:
            kills.append(kill)
            continue
        proc.wait(timeout=600)
        assert proc.returncode == 0, log.read_text()[-3000:]
        return kills
    raise AssertionError(f"the run never finished: {log.read_text()[-3000:]}")


def finish(proc: subprocess.Popen, run: Path) -> None:
    """Wait for the uninterrupted run (started beside the killed one: two single-thread
    processes on two cores)."""
    proc.wait(timeout=600)
    assert proc.returncode == 0, run.with_suffix(".log").read_text()[-3000:]


def assert_same_bits(a: Path, b: Path) -> None:
    x, y = load_file(a), load_file(b)
    assert x.keys() == y.keys()
    for k in x:
        assert x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]), k


@pytest.mark.slow
def test_image_training_killed_4_times_ends_with_the_uninterrupted_weights(tmp_path):
    folder = tmp_path / "images"
    for name, box in (("left", (0, 0, 4, 8)), ("top", (0, 0, 8, 4))):
        (folder / name).mkdir(parents=True)
        for i in range(12):
            image = Image.new("L", (8, 8), 10 + 7 * i)
            image.paste(230 - 3 * i, box)
            image.save(folder / name / f"{i}.png")

    def argv(run: Path) -> list[str]:
        return [
            *("train", "image", "--data", str(folder), "--preset", "tiny", "--steps", "30"),
            *("--batch-size", "4", "--checkpoint-every", "1", "--seed", "5", "--device", "cpu"),
            *("--out", str(run)),
        ]

    whole = start(argv(tmp_path / "whole"), tmp_path / "whole.log")
    kills = train_through_kills(argv(tmp_path / "killed"), tmp_path / "killed", random.Random(0))
    finish(whole, tmp_path / "whole")
    print(f"image: {len(kills)} kills survived, {kills.count('write')} during a write")
    assert len(kills) >= KILLS
    assert_same_bits(
        tmp_path / "killed" / "final" / "model.safetensors",
        tmp_path / "whole" / "final" / "model.safetensors",
    )
    assert not temporaries(tmp_path / "killed")  # a resumed run cleans up after the killed ones


@pytest.mark.slow
def test_text_training_killed_4_times_ends_with_the_uninterrupted_weights(tmp_path):
    corpus = tmp_path / "verse.txt"
    words = ["the", "king", "and", "queen", "of", "dust", "ride", "out", "at", "dawn", "to"]
    words += ["find", "a", "quiet", "sea"]
    lines = [" ".join(words[(3 * i + j) % len(words)] for j in range(7)) for i in range(120)]
    corpus.write_text("\n".join(lines) + "\n")

    def argv(run: Path) -> list[str]:
        return [
            *("train", "text", str(corpus), "--preset", "tiny", "--block-size", "32"),
            *("--steps", "30", "--batch-size", "4", "--eval-every", "0", "--log-every", "5"),
            *("--checkpoint-every", "1", "--seed", "5", "--device", "cpu", "--out", str(run)),
        ]

    whole = start(argv(tmp_path / "whole"), tmp_path / "whole.log")
    kills = train_through_kills(argv(tmp_path / "killed"), tmp_path / "killed", random.Random(1))
    finish(whole, tmp_path / "whole")
    print(f"text: {len(kills)} kills survived, {kills.count('write')} during a write")
    assert len(kills) >= KILLS
    assert_same_bits(
        tmp_path / "killed" / "model" / "model.safetensors",
        tmp_path / "whole" / "model" / "model.safetensors",
    )
    assert not temporaries(tmp_path / "killed")
