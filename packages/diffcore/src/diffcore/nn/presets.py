"""Named U-Net shapes kept as JSON in the workspace's ``shared/presets/`` folder, so the image
and spectrogram packages (and people) share one place to read and tune them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diffcore.nn.unet import UNetConfig


def presets_dir(start: Path | None = None) -> Path:
    """The nearest ``shared/presets`` folder above ``start`` (default: this file, then the
    current directory)."""
    starts = [start] if start is not None else [Path(__file__).resolve(), Path.cwd().resolve()]
    for origin in starts:
        for folder in [origin, *origin.parents]:
            candidate = folder / "shared" / "presets"
            if candidate.is_dir():
                return candidate
    raise FileNotFoundError(
        "no shared/presets folder found above "
        + " or ".join(str(s) for s in starts)
        + "; pass a preset file path instead"
    )


def read_preset(file: str | Path, name: str) -> dict[str, Any]:
    """The fields of preset ``name`` in a JSON file mapping preset names to fields; keys that
    start with "_" are comments. file: a path, or a bare file name looked up in
    :func:`presets_dir`."""
    path = Path(file)
    if not path.is_file() and path.parent == Path("."):
        path = presets_dir() / path
    if not path.is_file():
        raise FileNotFoundError(f"preset file {path} does not exist")
    try:
        table = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err
    if name not in table:
        raise ValueError(f"{path} has no preset {name!r}; it has {sorted(table)}")
    return {k: v for k, v in table[name].items() if not k.startswith("_")}


def load_unet_preset(file: str | Path, name: str, **overrides: object) -> UNetConfig:
    """``UNetConfig`` named ``name`` in a preset file (see :func:`read_preset`); ``overrides``
    replace fields (e.g. ``in_channels=1, num_classes=10``)."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in read_preset(file, name).items()}
    fields.update(overrides)
    try:
        return UNetConfig(**fields)
    except TypeError as err:
        raise ValueError(f"{file}: preset {name!r} does not fit UNetConfig: {err}") from err
