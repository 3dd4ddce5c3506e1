"""Quality of generated sequences: composition, novelty, diversity, motif preservation.

Identity between two sequences is the number of identical aligned residues, divided by the
length of the shorter one (CD-HIT's convention), under Biopython's ``PairwiseAligner``: global
alignment, BLOSUM62, gap open -10 / extend -0.5 (EMBOSS needle's defaults), end gaps free (a
fragment of a longer sequence counts as identical to it).

Novelty is the highest identity of a sample to any reference (training) sequence. Aligning
against every reference is quadratic, so candidates are first ranked by shared 3-mers (BLAST's
seeding idea) and only the ``top_k`` best are aligned; a sample identical to a reference shares
all its 3-mers with it, so memorised sequences are always found.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from Bio.Align import PairwiseAligner, substitution_matrices
from torch import Tensor

from diffprotein.alphabet import AMINO_ACIDS
from diffprotein.conditioning import Motif
from diffprotein.data import ProteinRecord
from diffprotein.judges import FamilyClassifier, ProteinLM, classify, perplexity

__all__ = [
    "FamilyScores",
    "IdentityIndex",
    "evaluate_samples",
    "format_scores",
    "composition",
    "composition_divergence",
    "identity",
    "jensen_shannon",
    "mean_pairwise_identity",
    "motif_preservation",
]

_LETTERS = AMINO_ACIDS + "X"
_CODE = {c: i for i, c in enumerate(_LETTERS)}
_K = 3


def composition(sequences: Sequence[str]) -> Tensor:
    """Frequencies (20,) float64 of the standard amino acids over all residues (X ignored)."""
    letters = Counter("".join(sequences))
    counts = torch.tensor([letters[a] for a in AMINO_ACIDS], dtype=torch.float64)
    total = counts.sum()
    if total == 0:
        raise ValueError("no standard residues to count")
    return counts / total


def jensen_shannon(p: Tensor, q: Tensor) -> float:
    """Jensen-Shannon divergence between two distributions, in bits (0 to 1)."""
    p, q = p.double() / p.sum(), q.double() / q.sum()
    m = (p + q) / 2

    def kl(a: Tensor, b: Tensor) -> float:
        nz = a > 0
        return float((a[nz] * (a[nz] / b[nz]).log2()).sum())

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def composition_divergence(samples: Sequence[str], reference: Sequence[str]) -> float:
    """Jensen-Shannon divergence (bits) between the amino-acid compositions of two sets."""
    return jensen_shannon(composition(samples), composition(reference))


def _aligner() -> PairwiseAligner:
    aligner = PairwiseAligner(
        mode="global",
        substitution_matrix=substitution_matrices.load("BLOSUM62"),
        open_gap_score=-10.0,
        extend_gap_score=-0.5,
    )
    aligner.end_gap_score = 0.0
    return aligner


_ALIGNER = _aligner()


def identity(a: str, b: str) -> float:
    """Identical aligned residues / length of the shorter sequence (see the module docstring);
    0 when either is empty (a sampler may stop before the first residue)."""
    if not a or not b:
        return 0.0
    counts = _ALIGNER.align(a, b)[0].counts()
    return counts.identities / min(len(a), len(b))


def _kmers(sequence: str) -> Tensor:
    """Distinct 3-mer ids of a sequence (letters outside the alphabet count as X)."""
    codes = torch.tensor([_CODE.get(c, 20) for c in sequence], dtype=torch.long)
    if len(codes) < _K:
        return torch.zeros(0, dtype=torch.long)
    base = len(_LETTERS)
    ids = codes[:-2] * base * base + codes[1:-1] * base + codes[2:]
    return ids.unique()


@dataclass
class IdentityIndex:
    """Reference sequences with an inverted 3-mer index, for nearest-identity queries."""

    sequences: list[str]
    _rows: Tensor  # reference indices, grouped by 3-mer id
    _offsets: Tensor  # (21^3 + 1,) start of each 3-mer's group in _rows
    _sizes: Tensor  # (N,) number of distinct 3-mers per reference

    @classmethod
    def build(cls, sequences: Sequence[str]) -> IdentityIndex:
        if not sequences:
            raise ValueError("the reference set is empty")
        kmers = [_kmers(s) for s in sequences]
        ids = torch.cat(kmers)
        rows = torch.cat([torch.full_like(k, i) for i, k in enumerate(kmers)])
        order = ids.argsort(stable=True)
        counts = torch.bincount(ids, minlength=len(_LETTERS) ** _K)
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        sizes = torch.tensor([len(k) for k in kmers], dtype=torch.float32)
        return cls(list(sequences), rows[order], offsets, sizes)

    def candidates(self, query: str, top_k: int) -> list[int]:
        """Indices of the ``top_k`` references sharing the largest share of 3-mers with
        ``query`` (shared / the smaller 3-mer count), best first."""
        ids = _kmers(query).tolist()
        hits = [self._rows[self._offsets[k] : self._offsets[k + 1]] for k in ids]
        if not hits:  # shorter than one 3-mer: no ranking, any references will do
            return list(range(min(top_k, len(self.sequences))))
        shared = torch.bincount(torch.cat(hits), minlength=len(self.sequences)).float()
        score = shared / torch.minimum(self._sizes, torch.tensor(float(len(ids)))).clamp_min(1)
        return score.topk(min(top_k, len(self.sequences))).indices.tolist()

    def nearest(self, queries: Sequence[str], top_k: int = 64) -> list[float]:
        """Highest identity of each query to any reference (among ``top_k`` 3-mer candidates)."""
        return [
            max(identity(q, self.sequences[j]) for j in self.candidates(q, top_k)) for q in queries
        ]


def mean_pairwise_identity(
    sequences: Sequence[str], *, max_pairs: int = 2000, seed: int = 0
) -> float:
    """Mean identity over pairs of distinct samples (all pairs, or ``max_pairs`` drawn at
    random): low = diverse. Needs at least two sequences."""
    n = len(sequences)
    if n < 2:
        raise ValueError("diversity needs at least two sequences")
    total = n * (n - 1) // 2
    if total <= max_pairs:
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    else:
        g = torch.Generator().manual_seed(seed)
        a = torch.randint(n, (max_pairs,), generator=g)
        b = (a + 1 + torch.randint(n - 1, (max_pairs,), generator=g)) % n
        pairs = list(zip(a.tolist(), b.tolist(), strict=True))
    return statistics.fmean(identity(sequences[i], sequences[j]) for i, j in pairs)


def motif_preservation(samples: Sequence[tuple[str, Motif]]) -> float:
    """Share of (sequence, motif) pairs whose every motif residue is in place (1.0 = all)."""
    if not samples:
        return math.nan
    return sum(m.preserved_in(s) for s, m in samples) / len(samples)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


@dataclass(frozen=True)
class FamilyScores:
    """Scores of the samples of one family (``family`` "all" for every sample together, each
    compared with its own family: see ``evaluate_samples``).

    Fractions and identities are in [0, 1]; perplexities are the judge's (NaN without one)."""

    family: str
    n: int
    composition_jsd: float  # bits, samples vs the family's reference sequences
    novelty_median_identity: float  # median over samples of the highest identity to reference
    diversity_mean_identity: float  # mean identity between pairs of samples (low = diverse)
    judge_accuracy: float = math.nan  # share the classifier assigns to the requested family
    judge_perplexity: float = math.nan  # perplexity of the samples under the AR judge
    heldout_perplexity: float = math.nan  # the same judge on held-out natural sequences
    motif_preserved: float = math.nan  # share of scaffolded samples with the motif intact

    @property
    def perplexity_ratio(self) -> float:
        return self.judge_perplexity / self.heldout_perplexity


def evaluate_samples(
    samples: Sequence[ProteinRecord],
    reference: Sequence[ProteinRecord],
    *,
    heldout: Sequence[ProteinRecord] = (),
    motifs: Sequence[Motif | None] | None = None,
    classifier: FamilyClassifier | None = None,
    judge: ProteinLM | None = None,
    top_k: int = 64,
    max_pairs: int = 2000,
) -> list[FamilyScores]:
    """Scores per requested family (``ProteinRecord.family`` of each sample; None = "none")
    and over all samples. reference: the training sequences (composition and novelty are
    measured against those of the sample's family, or all of them for unconditional samples);
    heldout: natural sequences the judge's perplexity is compared with; motifs: one per
    sample (None where a sample has none); ``top_k`` 0 or ``max_pairs`` 0 skip the
    alignments of novelty or diversity (NaN), the slowest scores, for quick screens.

    The "all" row (with two or more families) pools the samples for every score but two,
    which compare each family with itself so that the mix of families asked for does not
    count: composition divergence is the sample-weighted mean of the families' divergences,
    and the held-out perplexity is reweighted to the samples' families (token-weighted
    geometric mean), so its ratio is the token-weighted geometric mean of the families'."""
    if not samples:
        raise ValueError("no samples to evaluate")
    motifs = list(motifs) if motifs is not None else [None] * len(samples)
    if len(motifs) != len(samples):
        raise ValueError(f"got {len(motifs)} motifs for {len(samples)} samples")
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.family or "none", []).append(i)
    labels = classify(classifier, [s.sequence for s in samples]) if classifier else None
    nearest = [math.nan] * len(samples)
    rows = []
    for family, members in sorted(groups.items()):
        ref = [r.sequence for r in reference if r.family == family] or [
            r.sequence for r in reference
        ]
        if top_k > 0:
            found = IdentityIndex.build(ref).nearest([samples[i].sequence for i in members], top_k)
            for i, value in zip(members, found, strict=True):
                nearest[i] = value
        held = [r for r in heldout if r.family == family] or list(heldout)
        rows.append(
            _score(family, members, samples, motifs, ref, held, labels, nearest, judge, max_pairs)
        )
    if len(groups) > 1:
        rows.append(_family_matched(rows, samples, groups, labels, nearest, motifs, max_pairs))
    return rows


def _family_matched(
    rows: list[FamilyScores],
    samples: Sequence[ProteinRecord],
    groups: dict[str, list[int]],
    labels: list[str] | None,
    nearest: list[float],
    motifs: Sequence[Motif | None],
    max_pairs: int,
) -> FamilyScores:
    """The "all" row. Samples come in whatever mix of families was asked for (the benchmark
    asks for the same number of each), natural sequences in the data's mix, so pooled
    comparisons would score the mix rather than the sampler. Composition divergence is each
    family's to its own training sequences, averaged over samples. Both perplexities are
    geometric means of the families', weighted by each family's share of the samples' tokens
    (residues and <eos>): for the samples that is their pooled perplexity, and the ratio is
    the same weighted mean of the per-family ratios."""
    everything = list(range(len(samples)))
    row = _score("all", everything, samples, motifs, None, [], labels, nearest, None, max_pairs)
    by = {r.family: r for r in rows}
    jsd = sum(len(m) * by[f].composition_jsd for f, m in groups.items()) / len(samples)
    tokens = {f: sum(len(samples[i].sequence) + 1 for i in m) for f, m in groups.items()}

    def weighted(values: dict[str, float]) -> float:
        log = sum(n * math.log(values[f]) for f, n in tokens.items())
        return math.exp(log / sum(tokens.values()))

    return dataclasses.replace(
        row,
        composition_jsd=jsd,
        judge_perplexity=weighted({f: r.judge_perplexity for f, r in by.items()}),
        heldout_perplexity=weighted({f: r.heldout_perplexity for f, r in by.items()}),
    )


def _score(
    family: str,
    members: list[int],
    samples: Sequence[ProteinRecord],
    motifs: Sequence[Motif | None],
    reference: list[str] | None,
    heldout: list[ProteinRecord],
    labels: list[str] | None,
    nearest: list[float],
    judge: ProteinLM | None,
    max_pairs: int,
) -> FamilyScores:
    """Scores of the samples at indices ``members`` (composition divergence NaN without a
    ``reference``)."""
    chosen = [samples[i] for i in members]
    seqs = [s.sequence for s in chosen]
    scored = [(samples[i].sequence, motifs[i]) for i in members if motifs[i] is not None]
    accuracy = math.nan
    if labels is not None:
        accuracy = sum(labels[i] == samples[i].family for i in members) / len(members)
    ppl = held_ppl = math.nan
    if judge is not None:
        ppl = perplexity(judge, chosen)
        if heldout:
            held_ppl = perplexity(judge, heldout)
    return FamilyScores(
        family=family,
        n=len(seqs),
        composition_jsd=(
            composition_divergence(seqs, reference) if reference is not None else math.nan
        ),
        novelty_median_identity=median([nearest[i] for i in members]),
        diversity_mean_identity=(
            mean_pairwise_identity(seqs, max_pairs=max_pairs)
            if len(seqs) > 1 and max_pairs > 0
            else math.nan
        ),
        judge_accuracy=accuracy,
        judge_perplexity=ppl,
        heldout_perplexity=held_ppl,
        motif_preserved=motif_preservation(scored),
    )


def format_scores(rows: Sequence[FamilyScores]) -> str:
    """A markdown table of ``evaluate_samples`` rows."""
    head = (
        "| family | n | composition JSD (bits) | median nearest identity | mean pairwise identity "
        "| judge accuracy | judge ppl | held-out ppl | ppl ratio | motif kept |"
    )
    lines = [head, "|" + " --- |" * 10]
    for r in rows:
        lines.append(
            f"| {r.family} | {r.n} | {r.composition_jsd:.4f} | {r.novelty_median_identity:.3f} "
            f"| {r.diversity_mean_identity:.3f} | {_pct(r.judge_accuracy)} "
            f"| {r.judge_perplexity:.2f} | {r.heldout_perplexity:.2f} | {r.perplexity_ratio:.2f} "
            f"| {_pct(r.motif_preserved)} |"
        )
    return "\n".join(lines)


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}%"
