"""Hugging Face datasets with an ``Audio`` column -> :class:`~diffaudio.data.AudioClips`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from diffaudio.clips import AudioClips, build_clips, read_audio, to_rate


def load_hf_audio(
    dataset: Any,
    *,
    sample_rate: int,
    num_samples: int,
    audio_column: str = "audio",
    label_column: str | None = "label",
    speaker_column: str | None = None,
    **options: Any,
) -> AudioClips:
    """Rows of a ``datasets.Dataset`` with an ``Audio`` column (or a column of
    ``{"bytes", "path"}`` / ``{"array", "sampling_rate"}`` dicts) as :class:`AudioClips`.

    The column is read undecoded and decoded here (no ``torchcodec`` needed). ``ClassLabel``
    columns keep their names; other columns are used as strings. Errors name ``row i``.
    """
    import datasets

    if audio_column not in dataset.column_names:
        raise ValueError(f"dataset has no column {audio_column!r}; it has {dataset.column_names}")
    for column in (label_column, speaker_column):
        if column is not None and column not in dataset.column_names:
            raise ValueError(f"dataset has no column {column!r}; it has {dataset.column_names}")
    if isinstance(dataset.features[audio_column], datasets.Audio):
        dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))
    names = {}
    for column in (label_column, speaker_column):
        feature = dataset.features.get(column) if column else None
        if isinstance(feature, datasets.ClassLabel):
            names[column] = feature.names

    def read_row(value: Any, row: int) -> Tensor:
        where = f"row {row}"
        if not isinstance(value, dict):
            raise ValueError(f"{where}: audio must be a dict, got {type(value).__name__}")
        if value.get("array") is not None:
            wave = torch.as_tensor(value["array"], dtype=torch.float32)
            rate = value.get("sampling_rate")
            if rate is None:
                raise ValueError(f"{where}: an audio array needs its 'sampling_rate'")
            wave = wave.mean(0) if wave.ndim == 2 else wave
            return to_rate(wave, int(rate), sample_rate, where, what="the audio")
        if value.get("bytes"):
            return read_audio(value["bytes"], sample_rate, name=f"{where} ({value.get('path')})")
        if value.get("path"):
            return read_audio(value["path"], sample_rate, name=f"{where} ({value['path']})")
        raise ValueError(f"{where}: audio has neither bytes, a path nor an array")

    def meta(record: dict[str, Any], row: int) -> dict[str, str]:
        out = {"row": str(row)}
        for key, column in (("label", label_column), ("speaker", speaker_column)):
            if column is not None and record[column] is not None:
                value = record[column]
                out[key] = names[column][value] if column in names else str(value)
        return out

    items = (
        (f"row {i}", lambda v=r[audio_column], i=i: read_row(v, i), meta(r, i))
        for i, r in enumerate(dataset)
    )
    # Names given by the caller (e.g. a trained model's) win over the ClassLabel names.
    options.setdefault("label_names", names.get(label_column) if label_column else None)
    options.setdefault("speaker_names", names.get(speaker_column) if speaker_column else None)
    options.update(label_field="label", speaker_field="speaker")
    return build_clips(
        items, sample_rate=sample_rate, num_samples=num_samples, total=len(dataset), **options
    )
