"""Class (what is said) and speaker (who says it) conditioning, with a null value of each for
classifier-free guidance (Ho & Salimans 2022, https://arxiv.org/abs/2207.12598).

Ids 0..K-1 name the K classes (speakers); id K is the null ("any") value. Training replaces ids
by the null id at random (``diffcore.training.drop_condition``), so one network learns the conditional and the
unconditional model; sampling mixes the two (``diffcore.denoisers.guidance``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

ANY = "any"  # what a user writes for "no condition" (the null id)


def parse_ids(values: Sequence[str | int] | str, names: Sequence[str], what: str) -> list[int]:
    """Turn user values (names, ``"any"``, or a comma-separated string of them) into ids;
    ``"any"`` (or None-like) gives the null id ``len(names)``. Unknown values raise a
    ValueError listing the known ones."""
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    lookup = {str(n): i for i, n in enumerate(names)}
    ids = []
    for value in values:
        key = str(value)
        if key == ANY:
            ids.append(len(names))
        elif key in lookup:
            ids.append(lookup[key])
        else:
            raise ValueError(
                f"unknown {what} {key!r}: expected one of {list(names) + [ANY]}"
                if names
                else f"{what} {key!r} given, but the model was trained without {what}s"
            )
    return ids


def broadcast_ids(ids: Sequence[int], count: int, what: str) -> Tensor:
    """One id for every sample: a single id is repeated, otherwise ``len(ids)`` must divide
    ``count`` and the list is cycled (``labels 0..9, count 20`` -> two of each)."""
    if not ids:
        raise ValueError(f"no {what} given")
    if count % len(ids):
        raise ValueError(f"{len(ids)} {what}s do not divide {count} samples evenly")
    return torch.tensor(list(ids) * (count // len(ids)), dtype=torch.long)


def sample_conditions(
    label_names: Sequence[str],
    speaker_names: Sequence[str],
    labels: str,
    speakers: str,
    count: int | None = None,
) -> tuple[int, dict[str, Tensor], list[dict[str, str]]]:
    """From a person's text (``labels``: names, comma-separated, "all" or "any"; ``speakers``:
    names or "any") to the samples to draw: their number (``count``, default one per label or
    speaker given), the ``labels=`` / ``speakers=`` ids of a model with those names, and per
    sample its label and speaker names (``ANY`` for none)."""
    label_ids = parse_ids(
        ",".join(label_names) if labels == "all" else labels, label_names, "label"
    )
    speaker_ids = parse_ids(speakers, speaker_names, "speaker")
    n = count or max(len(label_ids), len(speaker_ids))
    ids = {}
    if label_names:
        ids["labels"] = broadcast_ids(label_ids, n, "label")
    if speaker_names:
        ids["speakers"] = broadcast_ids(speaker_ids, n, "speaker")

    def name(key: str, names: Sequence[str], i: int) -> str:
        return ANY if key not in ids or int(ids[key][i]) == len(names) else names[ids[key][i]]

    records = [
        {"label": name("labels", label_names, i), "speaker": name("speakers", speaker_names, i)}
        for i in range(n)
    ]
    return n, ids, records
