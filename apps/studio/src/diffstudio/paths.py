"""What the page may reach: model and output folders resolved inside the configured roots.

A path from the page is relative to a root; an absolute path, a ``..`` part, or one that
lands outside every root once symlinks are resolved is refused (``PathRefused``), so nothing
the page sends names a file elsewhere on the machine.
"""

from __future__ import annotations

import importlib
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from diffcore.generation import sampler_names

DOMAINS = ("image", "audio", "text", "protein")  # what the studio serves


PIPELINES = {  # each domain's pipeline class, imported in the worker on first use
    "image": ("diffimage", "ImagePipeline"),
    "audio": ("diffaudio.pipeline", "AudioPipeline"),
    "text": ("difftext", "TextPipeline"),
    "protein": ("diffprotein.pipeline", "ProteinPipeline"),
}


def _token_samplers(config: dict[str, Any]) -> list[str]:
    masked = (config.get("corruption") or "mask") == "mask"
    return list(sampler_names("token" if masked else "substitute"))


class PathRefused(ValueError):
    """A path that would leave the configured folders."""


def inside(roots: Sequence[Path], relative: str, *, must_exist: bool = True) -> Path:
    """The real path of ``relative`` under the first of ``roots`` that holds it (roots are
    resolved already). PathRefused for an absolute path, a ``..`` part or an escape through a
    symlink; FileNotFoundError when ``must_exist`` and no root holds it."""
    if not isinstance(relative, str) or "\x00" in relative:
        raise PathRefused(f"{relative!r} is not a path")
    text = relative.replace("\\", "/")
    pure = PurePosixPath(text)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", text) or text.startswith("~"):
        raise PathRefused(f"{relative!r} is absolute; give a path inside the studio's folders")
    if ".." in pure.parts:
        raise PathRefused(f"{relative!r} climbs out with '..'; give a path inside the folders")
    for root in roots:
        real = (root / pure).resolve()
        if not real.is_relative_to(root):
            raise PathRefused(f"{relative!r} leads outside {root} (through a symlink)")
        if real.exists() or not must_exist:
            return real
    raise FileNotFoundError(f"{relative!r} is in none of the studio's folders")


def detect_domain(folder: Path) -> str:
    """ "image" (config.json with a U-Net), "audio" (a U-Net and spectrogram settings),
    "protein" (a denoiser with families and lengths) or "text" (a difftext folder)."""
    if (folder / "difftext.json").is_file() or (folder / "model" / "difftext.json").is_file():
        return "text"
    config = folder / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{config} is not readable JSON: {err}") from None
        if isinstance(data, dict) and "unet" in data:
            return "audio" if "spectrogram" in data else "image"
        if isinstance(data, dict) and {"families", "lengths"} <= data.keys():
            return "protein"
    raise ValueError(
        f"{folder} is not a model folder the studio serves ({', '.join(DOMAINS)}: config.json "
        "of a U-Net, of a spectrogram U-Net or of a protein denoiser, or difftext.json)"
    )


@dataclass
class ModelEntry:
    name: str  # the path relative to its root, as the page names it
    path: Path
    domain: str
    pipeline: Any = None  # loaded on first use, in the worker

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "domain": self.domain, **self.pipeline_info()}

    def pipeline_info(self) -> dict[str, Any]:
        if self.domain == "text":
            return {"samplers": list(sampler_names("token"))}
        config = json.loads((self.path / "config.json").read_text())
        if self.domain == "protein":
            return {"families": list(config["families"]), "samplers": _token_samplers(config)}
        samplers = list(sampler_names("refine" if config.get("degradation") else "continuous"))
        if self.domain == "audio":
            from diffaudio.spectrogram import SpectrogramConfig

            spectrogram = SpectrogramConfig(**config["spectrogram"])
            return {
                "classes": list(config.get("label_names") or ()),
                "speakers": list(config.get("speaker_names") or ()),
                "seconds": round(spectrogram.seconds, 4),
                "samplers": samplers,
            }
        classes = int(config["unet"].get("num_classes") or 0)
        names = list(config.get("class_names") or [str(i) for i in range(classes)])
        return {
            "image_size": list(config.get("image_size", (28, 28))),
            "classes": names,
            "samplers": samplers,
        }


@dataclass
class Models:
    """The models the studio serves: folders inside ``roots``, loaded lazily on ``device``."""

    roots: list[Path]
    device: str = "cpu"
    entries: dict[str, ModelEntry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.roots = [Path(r).resolve() for r in self.roots]
        missing = [str(r) for r in self.roots if not r.is_dir()]
        if missing:
            raise FileNotFoundError(f"studio folders not found: {', '.join(missing)}")

    def add(self, path: str | Path, *, from_page: bool = True) -> ModelEntry:
        """Register a model folder. From the page only a path relative to a root is taken; the
        command line may also give an absolute one, which must still lie inside a root."""
        if not from_page and Path(path).is_absolute():
            real = Path(path).resolve()
            root = next((r for r in self.roots if real.is_relative_to(r)), None)
            if root is None:
                raise PathRefused(f"{path} is outside the studio's folders (--root)")
        else:
            real = inside(self.roots, str(path))
            root = next(r for r in self.roots if real.is_relative_to(r))
        if not real.is_dir():
            raise FileNotFoundError(f"{path} is not a folder")
        name = real.relative_to(root).as_posix() or real.name
        with self._lock:
            if name not in self.entries:
                self.entries[name] = ModelEntry(name, real, detect_domain(real))
            return self.entries[name]

    def get(self, name: str, domain: str | None = None) -> ModelEntry:
        entry = self.entries.get(name)
        if entry is None:
            raise KeyError(f"no model {name!r}; the studio serves {sorted(self.entries)}")
        if domain is not None and entry.domain != domain:
            raise ValueError(f"model {name!r} is a {entry.domain} model, not {domain}")
        return entry

    def pipeline(self, entry: ModelEntry) -> Any:
        """The entry's pipeline (loaded once; call from the worker thread)."""
        if entry.pipeline is None:
            module, name = PIPELINES[entry.domain]
            pipeline = getattr(importlib.import_module(module), name)
            entry.pipeline = pipeline.from_pretrained(entry.path, device=self.device)
        return entry.pipeline
