"""Checkpoint directories ``out_dir/checkpoints/step_000123/``, written atomically.

Each holds ``model.safetensors`` (the raw model), ``ema.safetensors`` (when EMA is on) and
``training_state.safetensors`` (optimizer, scheduler, GradScaler, RNG states, step and data
position, through ``diffcore.io.save_state``). A directory appears only complete (it is
written under a ``.tmp-*`` name and renamed), so a crash mid-write leaves the previous
checkpoint as the newest one; leftover ``.tmp-*`` directories are ignored and later removed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from diffcore.io import atomic_directory, load_state, load_weights, save_state, save_weights
from diffcore.training.ema import EMA

CHECKPOINTS = "checkpoints"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "training_state.safetensors"
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


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in ``out_dir``, or None."""
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def write_checkpoint(
    directory: Path, *, model: nn.Module, ema: EMA | None, state: dict[str, Any]
) -> Path:
    """Write one checkpoint atomically (replacing an older one of the same name)."""
    with atomic_directory(directory) as tmp:
        save_weights(model, tmp / MODEL_FILE)
        if ema is not None:
            save_file(ema.state_dict(), str(tmp / EMA_FILE), metadata={"format": "pt"})
        save_state(state, tmp / STATE_FILE)
    return directory


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
    """Keep the ``keep`` newest checkpoints; remove older ones and stale temporary dirs."""
    root = Path(out_dir) / CHECKPOINTS
    for _, d in list_checkpoints(out_dir)[:-keep]:
        shutil.rmtree(d, ignore_errors=True)
    for d in root.glob(".tmp-*"):
        shutil.rmtree(d, ignore_errors=True)
