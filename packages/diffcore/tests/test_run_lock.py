"""One training run per folder: ``diffcore.training.lock.run_lock`` across real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from diffcore.training.lock import LOCK_NAME, RunLockedError, lock_holder, run_lock

LOCK_MODULE = Path(__file__).resolve().parents[1] / "src" / "diffcore" / "training" / "lock.py"

# A second process that takes the lock, says so, then either waits for a line on stdin and
# leaves cleanly ("hold") or dies without releasing it ("die": what a kill -9 leaves).
HOLDER = f"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("lock", {str(LOCK_MODULE)!r})
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)  # the module alone: no torch import in the child
with lock.run_lock(sys.argv[1]):
    print("held", flush=True)
    if sys.argv[2] == "die":
        os._exit(0)
    sys.stdin.readline()
"""


def start_holder(folder: Path, mode: str = "hold") -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path):
    folder = tmp_path / "run"
    child = start_holder(folder)
    try:
        assert lock_holder(folder) == child.pid
        with pytest.raises(RunLockedError, match=rf"{folder}.*PID {child.pid}\b"), run_lock(folder):
            pass
        assert isinstance(RunLockedError("x"), FileExistsError)
    finally:
        child.communicate("\n", timeout=30)
    assert child.returncode == 0
    assert lock_holder(folder) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean exit leaves no stale lock to warn about
        with run_lock(folder):
            assert lock_holder(folder) == os.getpid()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    folder = tmp_path / "run"
    child = start_holder(folder, "die")
    child.wait(timeout=30)
    assert (folder / LOCK_NAME).is_file()  # its record outlived it...
    assert lock_holder(folder) is None  # ...but the OS lock died with it
    stale = rf"PID {child.pid}\b.*stale lock taken over"
    with pytest.warns(RuntimeWarning, match=stale), run_lock(folder):
        assert lock_holder(folder) == os.getpid()
    assert not (folder / LOCK_NAME).exists()


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    folder = tmp_path / "run"
    with run_lock(folder):
        with run_lock(folder):
            assert lock_holder(folder) == os.getpid()
        # Leaving the inner block keeps the outer hold: another process is still refused.
        probe = subprocess.run(
            [sys.executable, "-c", HOLDER, str(folder), "die"], capture_output=True, text=True
        )
        assert probe.returncode != 0
        assert f"PID {os.getpid()}" in probe.stderr and "RunLockedError" in probe.stderr
    assert lock_holder(folder) is None


def test_a_folder_the_lock_created_is_removed_unless_something_was_written(tmp_path):
    empty, used, existing = tmp_path / "empty", tmp_path / "used", tmp_path / "existing"
    with run_lock(empty):
        assert (empty / LOCK_NAME).is_file()
    assert not empty.exists()
    with run_lock(used):
        (used / "run.json").write_text("{}")
    assert sorted(p.name for p in used.iterdir()) == ["run.json"]
    existing.mkdir()
    with run_lock(existing):
        pass
    assert existing.is_dir() and not any(existing.iterdir())


@pytest.mark.skipif(
    os.name == "nt" or os.geteuid() == 0, reason="needs POSIX permissions that bind (not root)"
)
def test_an_unwritable_folder_is_one_clear_error(tmp_path):
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        expected = r"cannot write the run folder .*read-only/run"
        with pytest.raises(PermissionError, match=expected), run_lock(parent / "run"):
            pass
    finally:
        parent.chmod(0o700)


def test_a_folder_that_cannot_be_made_is_one_clear_error(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    expected = r"cannot write the run folder .*a-file/run \(.*\); expected"
    with pytest.raises(OSError, match=expected), run_lock(tmp_path / "a-file" / "run"):
        pass
