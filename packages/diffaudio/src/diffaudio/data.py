"""Audio data adapters: files and folders (wav/flac/ogg/mp3), Hugging Face datasets with an
``Audio`` column, labels from file names or metadata files -> fixed-length mono clips.

Every adapter ends in :class:`AudioClips`: waveforms (N, L) at one sample rate plus optional
class labels and speakers. Each clip goes through the same checks and the same length policy:

- read with ``soundfile`` (wav, flac, ogg, mp3 where libsndfile has it), else ``librosa``;
  channels averaged to mono; resampled with ``torchaudio.functional.resample`` (soxr for rates
  with no large common divisor; rates outside 1 kHz to 768 kHz are refused);
- refused (ValueError naming the file or row) when unreadable or corrupt, empty, not finite,
  silent (peak below ``silence_db`` dBFS) or shorter than ``min_seconds``; with
  ``on_error="skip"`` such clips are left out instead and counted in ``AudioClips.skipped``;
- **length policy** (:func:`fit_length`): a shorter clip is padded with silence at its end (the
  sound starts at time 0, as recordings do); a longer one is cut to the window of the target
  length holding the most energy (so a digit spoken late in a long file is kept).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from diffaudio.clips import (  # noqa: F401  (the clip helpers, importable from here too)
    AUDIO_EXTENSIONS,
    AudioClips,
    ClipChecks,
    OnError,
    build_clips,
    check_clip,
    fit_length,
    read_audio,
)
from diffaudio.hf import load_hf_audio

# Local folders


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """``"{digit}_{speaker}_{index}"`` -> a regex with one named group per field."""
    parts = re.split(r"\{(\w+)\}", pattern)
    regex = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)" for i, part in enumerate(parts)
    )
    return re.compile(regex + r"\Z")


def _read_metadata(path: Path) -> dict[str, dict[str, str]]:
    """Rows of a ``metadata.csv`` / ``metadata.jsonl`` keyed by their ``file_name`` column
    (the Hugging Face ``audiofolder`` convention)."""
    if path.suffix not in (".csv", ".jsonl"):
        raise ValueError(f"{path}: metadata must be a .csv or .jsonl file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # the BOM spreadsheets write is not a name
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from None
    rows = _csv_rows(text, path) if path.suffix == ".csv" else _jsonl_rows(text, path)
    table = {}
    for number, row in enumerate(rows, 1):
        if "file_name" not in row:
            raise ValueError(f"{path}: row {number} has no 'file_name' column")
        for key, value in row.items():
            if value is None or isinstance(value, list | dict):  # "None" is not a label
                raise ValueError(
                    f"{path}: row {number} holds {value!r} in {key!r}; expected text or a number"
                )
        table[str(row["file_name"])] = {k: str(v) for k, v in row.items() if k != "file_name"}
    return table


def _csv_rows(text: str, path: Path) -> list[dict[str, Any]]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(reader)
    except csv.Error as err:  # a NUL byte, an unclosed quote at the end
        raise ValueError(f"{path}: not a readable CSV file ({err})") from None
    for number, row in enumerate(rows, 1):
        if None in row or None in row.values():  # csv's marks of a row longer / shorter
            raise ValueError(
                f"{path}: row {number} does not have the header's {len(reader.fieldnames)} columns"
            )
    return rows


def _jsonl_rows(text: str, path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {line[:40]!r}")
            rows.append(row)
    return rows


def load_audio_folder(
    folder: str | Path,
    *,
    sample_rate: int,
    num_samples: int,
    pattern: str | None = None,
    metadata: str | Path | None = None,
    limit: int | None = None,
    **options: Any,
) -> AudioClips:
    """Every audio file under ``folder`` (recursively, sorted by path) as :class:`AudioClips`.

    Fields of each clip, later ones overriding earlier: ``label`` = the name of its parent
    folder when files sit in class folders (audiofolder's convention); the fields of
    ``pattern`` matched against the file name without extension (FSDD:
    ``"{label}_{speaker}_{index}"``; a file that does not match is an error); the columns of a
    metadata file (``metadata``, or ``metadata.csv`` / ``metadata.jsonl`` in ``folder``) whose
    ``file_name`` column holds paths relative to ``folder``. ``label_field`` / ``speaker_field``
    (default ``"label"`` / ``"speaker"``) name the fields used for conditioning.
    ``options`` go to :func:`build_clips` (checks, on_error, names, progress).
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise ValueError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    if limit is not None:
        files = files[:limit]
    if metadata is None:
        found = [root / n for n in ("metadata.csv", "metadata.jsonl") if (root / n).is_file()]
        metadata = found[0] if found else None
    table = _read_metadata(Path(metadata)) if metadata is not None else {}
    regex = _pattern_regex(pattern) if pattern else None

    def fields_of(path: Path) -> dict[str, str]:
        relative = path.relative_to(root).as_posix()
        meta = {"label": path.parent.name} if path.parent != root else {}
        if regex is not None:
            match = regex.match(path.stem)
            if match is None:
                raise ValueError(f"{path}: file name does not match the pattern {pattern!r}")
            meta.update(match.groupdict())
        meta.update(table.get(relative, {}))
        return meta

    items = ((str(p), lambda p=p: read_audio(p, sample_rate), fields_of(p)) for p in files)
    return build_clips(
        items, sample_rate=sample_rate, num_samples=num_samples, total=len(files), **options
    )


def load_audio(
    source: str | Path | Any, *, sample_rate: int, num_samples: int, **options: Any
) -> AudioClips:
    """Dispatch on ``source``: a folder (:func:`load_audio_folder`), a ``.parquet`` file in the
    Hugging Face Hub layout or a ``datasets.Dataset`` (:func:`diffaudio.hf.load_hf_audio`)."""
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            return load_audio_folder(
                path, sample_rate=sample_rate, num_samples=num_samples, **options
            )
        if path.suffix == ".parquet" and path.is_file():
            import datasets

            datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False  # local: no "download count"

            table = datasets.load_dataset("parquet", data_files=str(path), split="train")
            hf = {
                k: options.pop(k)
                for k in ("audio_column", "label_column", "speaker_column")
                if k in options
            }
            return load_hf_audio(
                table, sample_rate=sample_rate, num_samples=num_samples, **hf, **options
            )
        raise ValueError(f"{path}: expected a folder of audio files or a .parquet file")
    return load_hf_audio(source, sample_rate=sample_rate, num_samples=num_samples, **options)


def load_split(
    source: str | Path,
    spectrogram: Any,
    *,
    pattern: str | None = None,
    label_field: str = "label",
    speaker_field: str | None = "speaker",
    split_field: str | None = None,
    held_out: Sequence[str] = (),
    use: Literal["train", "test", "all"] = "all",
    **options: Any,
) -> AudioClips:
    """Clips for ``spectrogram`` (a ``SpectrogramConfig``: its rate and clip length) of a folder
    (``pattern``: the fields in file names) or a ``.parquet`` file (the fields are columns),
    labelled by ``label_field`` and ``speaker_field`` (None: no speakers), and with
    ``split_field``: the clips whose field is in ``held_out`` (``use="test"``), the others
    (``"train"``) or all. ``options``: ``limit``, ``on_error``, ``label_names``..."""
    if Path(source).is_dir():
        names = {"pattern": pattern, "hop": spectrogram.hop_length, "label_field": label_field}
        options |= names | {"speaker_field": speaker_field}
    else:
        options |= {"label_column": label_field, "speaker_column": speaker_field}
        options.pop("limit", None)
    rate, length = spectrogram.sample_rate, spectrogram.num_samples
    clips = load_audio(source, sample_rate=rate, num_samples=length, **options)
    if split_field and use != "all":
        test, train = clips.split_by_field(split_field, held_out)
        clips = train if use == "train" else test
    return clips
