"""Checkpoint directories ``out_dir/checkpoints/step_000123/``, written atomically.

Each holds ``model.safetensors`` (the raw model), ``ema.safetensors`` (when EMA is on) and
``training_state.safetensors`` (optimizer, scheduler, GradScaler, step and data position, through
``diffcore.io.save_state``; no RNG state: the loop reseeds every micro-batch from the seed and the
step). A directory appears only complete (it is written under a temporary name carrying the
writer's PID, then renamed), so a crash mid-write leaves the previous checkpoint as the newest
one. A process removes only its own temporaries, and those of processes that no longer run
(``remove_stale_temporaries``), never another live run's. ``checksums.json`` (SHA-256 of every
other file, written last) lets a resume skip a checkpoint damaged since (a truncated copy, a bad
disk) for the one before it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from diffcore.io import (
    atomic_directory,
    load_state,
    load_weights,
    remove_temporaries,
    save_state,
    save_weights,
)
from diffcore.training.ema import EMA

CHECKPOINTS = "checkpoints"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "training_state.safetensors"
CHECKSUMS_FILE = "checksums.json"
_STEP_DIR = re.compile(r"step_(\d+)")


def checkpoint_path(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / CHECKPOINTS / f"step_{step:06d}"


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints as (step, directory), oldest first."""
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = _STEP_DIR.fullmatch(d.name)
        if m and (d / STATE_FILE).is_file() and (d / MODEL_FILE).is_file():
            found.append((int(m.group(1)), d))
    return sorted(found)


def latest_checkpoint(out_dir: str | Path, *, verify: bool = False) -> Path | None:
    """The newest complete checkpoint in ``out_dir``, or None. verify: check its checksums and
    skip a damaged one (with a warning naming it) for the one before it."""
    for _, directory in reversed(list_checkpoints(out_dir)):
        damage = checkpoint_damage(directory) if verify else None
        if damage is None:
            return directory
        warnings.warn(
            f"skipping the damaged checkpoint {directory}: {damage}", RuntimeWarning, stacklevel=2
        )
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_checksums(directory: Path) -> None:
    names = sorted(p.name for p in directory.iterdir() if p.is_file())
    sums = {name: _sha256(directory / name) for name in names}
    text = json.dumps({"sha256": sums}, indent=2) + "\n"
    (directory / CHECKSUMS_FILE).write_text(text, encoding="utf-8")


def checkpoint_damage(directory: str | Path) -> str | None:
    """What is wrong with checkpoint ``directory`` (a file missing, or not matching its
    checksum), or None when it is intact. Checkpoints written before checksums existed (no
    ``checksums.json``) cannot be checked and count as intact."""
    directory = Path(directory)
    listing = directory / CHECKSUMS_FILE
    if not listing.is_file():
        missing = [n for n in (MODEL_FILE, STATE_FILE) if not (directory / n).is_file()]
        return f"{missing[0]} is missing" if missing else None
    try:
        sums = json.loads(listing.read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{CHECKSUMS_FILE} is unreadable"
    if not isinstance(sums, dict) or MODEL_FILE not in sums or STATE_FILE not in sums:
        return f"{CHECKSUMS_FILE} does not list {MODEL_FILE} and {STATE_FILE}"
    for name, expected in sums.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != expected:
            return f"{name} does not match its SHA-256 in {CHECKSUMS_FILE}"
    return None


def write_checkpoint(
    directory: Path, *, model: nn.Module, ema: EMA | None, state: dict[str, Any]
) -> Path:
    """Write one checkpoint atomically (replacing an older one of the same name), with
    ``checksums.json`` last. A failed write (disk full, no permission) leaves nothing behind
    and raises an OSError naming the newest checkpoint that is still there."""
    try:
        with atomic_directory(directory) as tmp:
            save_weights(model, tmp / MODEL_FILE)
            if ema is not None:
                save_file(ema.state_dict(), str(tmp / EMA_FILE), metadata={"format": "pt"})
            save_state(state, tmp / STATE_FILE)
            _write_checksums(tmp)
    except OSError as err:
        raise _write_failed(directory, err) from err
    return directory


def _write_failed(directory: Path, err: OSError) -> OSError:
    """``err`` restated for a person: which checkpoint failed, why, and what is kept."""
    last = latest_checkpoint(directory.parent.parent)
    kept = f"the last good checkpoint, {last}, is intact" if last else "no checkpoint is kept"
    reason = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        reason += "; free some space"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason += "; make the folder writable"
    return type(err)(
        f"could not write checkpoint {directory} ({reason}); {kept} and a rerun resumes from it"
    )


def read_checkpoint(directory: Path, *, model: nn.Module, ema: EMA | None) -> dict[str, Any]:
    """Load model (and EMA) weights in place; return the training state dict."""
    load_weights(model, directory / MODEL_FILE)
    if ema is not None:
        ema_path = directory / EMA_FILE
        if ema_path.is_file():
            ema.load_state_dict(load_file(str(ema_path)))
        else:
            # EMA switched on for a run that had none: start the average at the current weights.
            ema.load_state_dict({**dict(model.named_parameters()), **dict(model.named_buffers())})
    return load_state(directory / STATE_FILE)


def prune_checkpoints(out_dir: str | Path, keep: int) -> None:
    """Keep the ``keep`` newest checkpoints; remove older ones and this process's leftover
    temporaries (another process's may be a checkpoint it is writing)."""
    for _, d in list_checkpoints(out_dir)[:-keep]:
        shutil.rmtree(d, ignore_errors=True)
    remove_temporaries(Path(out_dir) / CHECKPOINTS)
