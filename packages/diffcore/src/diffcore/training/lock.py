"""One training run per folder: ``run_lock(out_dir)`` holds an OS lock on ``out_dir/.lock``.

The lock is the operating system's (``flock`` on POSIX, ``msvcrt.locking`` on Windows), so it
dies with its process: a ``.lock`` file left by a killed run is not held and is taken over (with
a warning). The file records the holder's PID, host and start time for the refusal message.
Within one process the lock is reentrant (the CLI holds it around a command whose ``train``
call takes it again).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".lock"

# This process's locks: resolved folder -> [open lock file descriptor, nesting depth]. A second
# flock on a new descriptor would conflict with our own, so nesting is counted here instead.
_held: dict[Path, list[int]] = {}
_held_guard = threading.Lock()


class RunLockedError(FileExistsError):
    """Another process is training into the same run folder."""


if sys.platform == "win32":
    import msvcrt

    _WIN_BYTE = 1 << 30  # lock a byte far past the record: Windows locks are mandatory

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _WIN_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WIN_BYTE, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _read_record(path: Path) -> dict:
    """The holder's record in ``path`` ({} when absent, empty or not ours)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _holder_text(record: dict) -> str:
    pid = record.get("pid", "unknown")
    where = f" on {record['host']}" if record.get("host") else ""
    since = f" since {record['started']}" if record.get("started") else ""
    return f"PID {pid}{where}{since}"


def _unwritable(folder: Path, err: OSError) -> OSError:
    reason = err.strerror or str(err)
    return type(err)(
        f"cannot write the run folder {folder} ({reason}); expected a folder this user can "
        "create and write, with free space"
    )


def _acquire(folder: Path) -> int:
    """Open and lock ``folder/.lock``; return its descriptor. Raises RunLockedError."""
    path = folder / LOCK_NAME
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            record = _read_record(path)
            raise RunLockedError(
                f"the run folder {folder} is in use by another training run "
                f"({_holder_text(record)}); wait for it to finish, stop it, or choose another "
                "output folder"
            )
        # The previous holder unlinks the file just before unlocking: if our descriptor is that
        # unlinked file, the lock guards nothing, so open the path again.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        _unlock(fd)
        os.close(fd)
    raise RunLockedError(f"the run folder {folder} keeps changing hands; try again")


def _write_record(fd: int, folder: Path) -> None:
    stale = _read_record(folder / LOCK_NAME)
    if stale:  # a holder that exits cleanly removes the file: this one was killed
        warnings.warn(
            f"{folder / LOCK_NAME} was left by a run that no longer holds it "
            f"({_holder_text(stale)}); stale lock taken over",
            RuntimeWarning,
            stacklevel=4,
        )
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(record).encode() + b"\n")


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of run folder ``folder`` (created if missing) for the ``with`` block.

    Raises RunLockedError (a FileExistsError) naming the holder's PID when another process
    holds it, and an OSError naming the folder when it cannot be created or written. A
    ``.lock`` left by a dead process is taken over with a RuntimeWarning. Nested use in one
    process is allowed. On exit the lock file is removed, and the folder too when this call
    created it and nothing else was written there. Yields the folder.
    """
    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        key = folder.resolve()
    except OSError as err:
        raise _unwritable(folder, err) from err
    with _held_guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
        else:
            _held[key] = [_take(folder, created), 1]
    try:
        yield folder
    finally:
        with _held_guard:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                _release(entry[0], folder, created)


def _take(folder: Path, created: bool) -> int:
    """Acquire the lock and write our record; on failure leave no folder we created."""
    fd = None
    try:
        fd = _acquire(folder)
        _write_record(fd, folder)
        return fd
    except BaseException as err:
        if fd is not None:
            _release(fd, folder, created)
        elif created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(err, OSError) and not isinstance(err, RunLockedError):
            raise _unwritable(folder, err) from err
        raise


def _release(fd: int, folder: Path, created: bool) -> None:
    # Empty the record (a clean exit, not a stale lock, where unlinking fails on Windows), and
    # unlink before unlocking so a waiting process never takes a file that is going away.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        (folder / LOCK_NAME).unlink()
    _unlock(fd)
    os.close(fd)
    if created:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds when nothing else was written


def lock_holder(folder: str | os.PathLike) -> int | None:
    """The PID of the process holding ``folder``'s run lock, or None when nobody holds it."""
    folder = Path(folder)
    path = folder / LOCK_NAME
    with _held_guard:
        if folder.exists() and folder.resolve() in _held:
            return os.getpid()
    if not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            _unlock(fd)
            return None
    finally:
        os.close(fd)
    pid = _read_record(path).get("pid")
    return pid if isinstance(pid, int) else None
