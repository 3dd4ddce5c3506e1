"""What a sample is conditioned on: a family, a length, and a motif (residues fixed at given
positions, the scaffold around them generated).

Positions are 1-based and inclusive, as in FASTA tools and papers: ``15-30:SEQ`` puts the 16
letters of SEQ at residues 15 to 30.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from diffprotein.alphabet import AMINO_ACIDS, PAD_ID, encode

__all__ = ["ALL_FAMILIES", "LengthPrior", "Motif", "MotifSegment", "family_ids"]

ALL_FAMILIES = "*"  # the key of the length histogram over every training sequence
_SEGMENT = re.compile(r"^(\d+)(?:-(\d+))?:([A-Za-z]+)$")


@dataclass(frozen=True)
class MotifSegment:
    """``residues`` fixed from 1-based position ``start`` on."""

    start: int
    residues: str

    @property
    def end(self) -> int:
        """Last position (1-based, inclusive)."""
        return self.start + len(self.residues) - 1

    def __str__(self) -> str:
        return f"{self.start}-{self.end}:{self.residues}"


@dataclass(frozen=True)
class Motif:
    """Fixed residues at fixed positions: one or more non-overlapping segments, sorted."""

    segments: tuple[MotifSegment, ...]

    def __post_init__(self) -> None:
        if not self.segments:
            raise ValueError("a motif needs at least one segment")
        ordered = sorted(self.segments, key=lambda s: s.start)
        for seg in ordered:
            if seg.start < 1:
                raise ValueError(f"motif segment {seg} starts before position 1")
            bad = [c for c in seg.residues if c not in AMINO_ACIDS]
            if bad:
                raise ValueError(
                    f"motif segment {seg} has {bad[0]!r}; motifs use the 20 standard letters "
                    f"{AMINO_ACIDS}"
                )
        for a, b in zip(ordered, ordered[1:], strict=False):
            if b.start <= a.end:
                raise ValueError(f"motif segments {a} and {b} overlap")
        object.__setattr__(self, "segments", tuple(ordered))

    @classmethod
    def parse(cls, texts: str | Iterable[str]) -> Motif:
        """From ``START-END:SEQ`` or ``START:SEQ`` segments (a list, or one string with
        segments separated by commas), e.g. ``"15-30:ACDEFGHIKLMNPQRS,40:WY"``."""
        if isinstance(texts, str):
            texts = [texts]
        segments = []
        for text in texts:
            for part in text.split(","):
                segments.append(_parse_segment(part.strip()))
        return cls(tuple(segments))

    def __str__(self) -> str:
        return ",".join(str(s) for s in self.segments)

    @property
    def end(self) -> int:
        """The last motif position: the shortest sequence that can hold the motif."""
        return self.segments[-1].end

    def __len__(self) -> int:
        return sum(len(s.residues) for s in self.segments)

    def check_fits(self, length: int) -> None:
        if self.end > length:
            raise ValueError(
                f"motif {self} ends at residue {self.end}, beyond the sequence length {length}"
            )

    def known_and_mask(self, length: int, width: int | None = None) -> tuple[Tensor, Tensor]:
        """Tokens (W,) long and mask (W,) bool for a sampler's ``known`` / ``mask``: True at
        motif positions of a sequence of ``length`` residues in a row of ``width`` (default
        ``length``) columns; padding elsewhere."""
        self.check_fits(length)
        width = length if width is None else width
        known = torch.full((width,), PAD_ID, dtype=torch.long)
        mask = torch.zeros(width, dtype=torch.bool)
        for seg in self.segments:
            known[seg.start - 1 : seg.end] = encode(seg.residues)
            mask[seg.start - 1 : seg.end] = True
        return known, mask

    def preserved_in(self, sequence: str) -> bool:
        """True when every motif residue is at its position in ``sequence``."""
        return all(sequence[s.start - 1 : s.end] == s.residues for s in self.segments)


def _parse_segment(text: str) -> MotifSegment:
    match = _SEGMENT.match(text)
    if match is None:
        raise ValueError(
            f"cannot read motif segment {text!r}: expected START-END:RESIDUES or "
            "START:RESIDUES with 1-based positions, e.g. 15-30:ACDEFGHIKLMNPQRS"
        )
    start, end, residues = int(match[1]), match[2], match[3].upper()
    if end is not None and int(end) - start + 1 != len(residues):
        raise ValueError(
            f"motif segment {text!r}: positions {start}-{end} hold {int(end) - start + 1} "
            f"residues but {len(residues)} letters were given"
        )
    return MotifSegment(start, residues)


def family_ids(names: Sequence[str | None], families: Sequence[str]) -> Tensor:
    """Indices (B,) long of family ``names`` in a model's ``families``; None -> -1 (none)."""
    index = {f: i for i, f in enumerate(families)}
    out = []
    for name in names:
        if name is None:
            out.append(-1)
        elif name in index:
            out.append(index[name])
        else:
            known = ", ".join(families) if families else "none (an unconditional model)"
            raise ValueError(f"unknown family {name!r}; this model knows: {known}")
    return torch.tensor(out, dtype=torch.long)


@dataclass(frozen=True)
class LengthPrior:
    """Sequence lengths seen in training, per family and over all (key ``"*"``), to draw the
    length of a sample whose length is not given."""

    counts: Mapping[str, Mapping[int, int]]

    @classmethod
    def from_records(cls, pairs: Iterable[tuple[str | None, int]]) -> LengthPrior:
        """From (family, length) pairs."""
        counts: dict[str, Counter[int]] = {ALL_FAMILIES: Counter()}
        for family, length in pairs:
            counts[ALL_FAMILIES][length] += 1
            if family is not None:
                counts.setdefault(family, Counter())[length] += 1
        return cls({k: dict(v) for k, v in counts.items()})

    def to_json(self) -> dict[str, list[list[int]]]:
        """{family: [[length, count], ...]} (JSON object keys must be strings)."""
        return {k: sorted([int(n), int(c)] for n, c in v.items()) for k, v in self.counts.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Sequence[Sequence[int]]]) -> LengthPrior:
        return cls({k: {int(n): int(c) for n, c in v} for k, v in data.items()})

    def sample(
        self, family: str | None, n: int, generator: torch.Generator | None = None
    ) -> list[int]:
        """``n`` lengths drawn from the family's histogram (all families' for None)."""
        key = ALL_FAMILIES if family is None else family
        hist = self.counts.get(key)
        if not hist:
            raise ValueError(f"no training lengths recorded for {key!r}; pass a length explicitly")
        lengths = torch.tensor(sorted(hist), dtype=torch.long)
        weights = torch.tensor([hist[int(n)] for n in lengths], dtype=torch.float64)
        picks = torch.multinomial(weights, n, replacement=True, generator=generator)
        return lengths[picks].tolist()
