"""The public API for generation: :class:`ProteinPipeline` samples new sequences (of a family,
a length, around a motif), infills regions and edits (partially re-noises) existing ones, and
writes FASTA. Sampler, steps, guidance, seeds and batching: ``diffcore.generation``.

```python
pipe = ProteinPipeline.from_pretrained("runs/protein/final")
records = pipe.sample(8, family="sh3", length=60, guidance=2.0, seed=0)   # Bio SeqRecords
pipe.save(records, "sh3.fasta")
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Unpack

import torch
from Bio.Seq import Seq
from Bio.SeqRecord import SeqRecord
from torch import Tensor

from diffcore.denoisers import condition, guidance
from diffcore.generation import Run, Sampling, TokenOptions, TokenPipeline, mask_experts, remask
from diffcore.io import from_pretrained
from diffcore.processes.substitution import SubstitutionProcess
from diffcore.seeding import sample_seeds
from diffprotein.alphabet import MASK_ID, PAD_ID, decode, encode
from diffprotein.conditioning import LengthPrior, Motif, family_ids
from diffprotein.corruption import check_has_likelihood
from diffprotein.data import ProteinRecord, format_header, write_fasta
from diffprotein.model import ProteinDenoiser, process_for

__all__ = ["ProteinPipeline", "regions_mask"]

# Mask draws of the NLL bound per candidate when best_of ranks them (stratified over the
# masked share, so a few draws already cover light and heavy masking)
RANKING_DRAWS = 4


class ProteinPipeline(TokenPipeline):
    """A trained :class:`ProteinDenoiser` ready to generate; outputs are Biopython
    ``SeqRecord``s whose ``annotations`` (and FASTA header) say how each was made.

    The default sampler: masked_ancestral (each residue drawn from the model's conditional,
    EvoDiff's order-agnostic decoding), confidence for a block-diffusion model (its only one),
    or substitute for a model trained on substitution (refinement, its only one).
    """

    model_class = ProteinDenoiser

    def __init__(self, model: ProteinDenoiser, *, experts: Sequence[Any] = (), **options: Any):
        """experts: denoisers (or their folders) trained on the other ranges of masked shares
        (``ProteinDenoiserConfig.mask_range``); with ``model`` they must cover [0, 1], and each
        step goes to the model that learned its share (experts per noise level)."""
        super().__init__(model, **options)
        self.experts = [
            from_pretrained(ProteinDenoiser, e, device=self.device)
            if isinstance(e, (str, Path))
            else e.to(self.device)
            for e in experts
        ]
        for e in self.experts:
            e.eval()
            keep = ("families", "diffusion_block", "corruption")
            if any(getattr(e.config, k) != getattr(model.config, k) for k in keep):
                raise ValueError(
                    f"experts must share the model's {', '.join(keep)}: got {e.config} for "
                    f"{model.config}"
                )
        self._experts_denoiser()  # their ranges must tile [0, 1]

    def _experts_denoiser(self) -> Any:
        nets = [self.model, *self.experts]
        return mask_experts(nets, [m.config.mask_range for m in nets])

    @property
    def time_independent(self) -> bool:  # type: ignore[override]
        # experts answer by the step's time: logits of one step are not another's
        return not self.experts

    @property
    def mask_id(self) -> int:
        return MASK_ID

    @property
    def diffusion_block(self) -> int | None:
        return self.model.config.diffusion_block

    @property
    def substitution(self) -> SubstitutionProcess | None:
        return self.model.config.substitution

    @property
    def default_sampler(self) -> str:
        if self.substitution is not None:
            return "substitute"
        return "confidence" if self.diffusion_block is not None else "masked_ancestral"

    @property
    def families(self) -> tuple[str, ...]:
        return self.model.config.families

    def denoiser(self, x: Tensor, conditions: Mapping[str, Tensor], scale: float) -> Any:
        # a block model's pass leaves out the blocks after the one being drawn (exact, cheaper)
        fixed = {"allow_unknown": False, "skip_later_blocks": self.diffusion_block is not None}
        family, net = conditions["family"], self._experts_denoiser()
        if scale != 1.0 and bool((family >= 0).any()):
            cond, uncond = {"family": family}, {"family": torch.full_like(family, -1)}
            return condition(guidance(net, scale, cond, uncond), **fixed)
        return condition(net, family=family, **fixed)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        family: str | None = None,
        length: int | Sequence[int] | None = None,
        motif: Motif | None = None,
        best_of: int = 1,
        **sampling: Unpack[Sampling],
    ) -> list[SeqRecord]:
        """``n`` new sequences, optionally of a family, of given length(s), around a motif.

        length: one for all, one per sample, or None to draw each from the lengths seen in
        training for the family (at least the motif's end). Motif residues are fixed tokens,
        never changed. best_of: draw this many candidates per sample and keep the one the
        model finds likeliest (its bound on the NLL per generated residue): typical sequences
        over odd ones, at best_of times the cost (masked models only: a substitution model
        has no likelihood bound to rank by). steps: None = one per residue."""
        self.check_count(n)
        if isinstance(best_of, bool) or not isinstance(best_of, int) or best_of < 1:
            raise ValueError(f"best_of must be a positive integer, got {best_of!r}")
        if best_of > 1:  # refused before best_of times the sampling is spent
            check_has_likelihood(self.model.config.corruption)
        plan, run = self.plan(sampling)
        seed = run["seed"]
        fam = family_ids([family], self.families)
        lengths = self._lengths(n, family, length, motif, seed)
        rows = []
        for size in lengths:
            x = torch.full((size,), MASK_ID, dtype=torch.long)
            if motif is not None:
                known, where = motif.known_and_mask(size)
                x[where] = known[where]
            rows += [x] * best_of  # a sample's candidates share its length and motif
        tokens = self.fill(rows, conditions={"family": fam.expand(len(rows))}, plan=plan, **run)
        if best_of > 1:
            tokens = self._best(tokens, best_of, fam, motif, seed)
        fields: dict[str, Any] = {"family": family or "none"}
        if motif is not None:
            fields["motif"] = str(motif)
        extra = self._fields(plan, seed) | ({"best_of": best_of} if best_of > 1 else {})
        return [
            _record(f"sample_{i:05d}", decode(t), {**fields, "length": len(t), **extra})
            for i, t in enumerate(tokens)
        ]

    @torch.no_grad()
    def infill(
        self,
        records: Sequence[ProteinRecord | SeqRecord],
        regions: str,
        *,
        family: str | None = None,
        **sampling: Unpack[Sampling],
    ) -> list[SeqRecord]:
        """Regenerate the 1-based ``regions`` (e.g. ``"10-20,40-45"``) of each record, keeping
        every other residue; the family defaults to each record's own where the model knows
        it."""
        sources = [_as_protein(r) for r in records]
        rows = []
        for r in sources:
            x = self._encode(r)
            x[regions_mask(regions, len(x))] = MASK_ID
            rows.append(x)
        plan, run = self.plan(sampling)
        return self._redesign(sources, rows, family, {"infilled": regions}, "infill", plan, run)

    @torch.no_grad()
    def edit(
        self,
        records: Sequence[ProteinRecord | SeqRecord],
        strength: float = 0.5,
        *,
        family: str | None = None,
        **sampling: Unpack[Sampling],
    ) -> list[SeqRecord]:
        """Partial re-noising: mask a random ``strength`` share of each record's residues
        (by each record's own seed) and regenerate them, keeping the rest."""
        sources = [_as_protein(r) for r in records]
        plan, run = self.plan(sampling)
        rows = remask([self._encode(r) for r in sources], strength, MASK_ID, seed=run["seed"])
        return self._redesign(sources, rows, family, {"strength": strength}, "edit", plan, run)

    @staticmethod
    def save(records: Sequence[SeqRecord], path: str | Path) -> Path:
        """Write records as FASTA with ``KEY=VALUE`` headers (atomically)."""
        return write_fasta([(r.id, str(r.seq), r.annotations) for r in records], path)

    # helpers

    def _encode(self, record: ProteinRecord) -> Tensor:
        if len(record.sequence) > self.model.config.max_length:
            raise ValueError(
                f"record {record.id!r} has {len(record.sequence)} residues, more than the "
                f"model's max_length {self.model.config.max_length}"
            )
        try:
            return encode(record.sequence)
        except ValueError as err:
            raise ValueError(f"record {record.id!r}: {err}") from None

    def _redesign(
        self,
        sources: list[ProteinRecord],
        rows: list[Tensor],
        family: str | None,
        how: dict[str, Any],
        suffix: str,
        plan: TokenOptions,
        run: Run,
    ) -> list[SeqRecord]:
        names = [family or r.family for r in sources]
        names = [name if name in self.families else None for name in names]
        tokens = self.fill(
            rows, conditions={"family": family_ids(names, self.families)}, plan=plan, **run
        )
        extra = self._fields(plan, run["seed"])
        return [
            _record(
                f"{r.id.replace('/', '_')}_{suffix}",
                decode(t),
                {"source": r.id, "family": name or "none", **how, **extra},
            )
            for r, t, name in zip(sources, tokens, names, strict=True)
        ]

    def _best(
        self, tokens: list[Tensor], k: int, fam: Tensor, motif: Motif | None, seed: int
    ) -> list[Tensor]:
        """The likeliest of each sample's k candidates by the denoiser's own NLL bound per
        generated residue (family-conditioned, no guidance; motif residues are context)."""
        process = process_for(self.diffusion_block)
        out = []
        for i, s in enumerate(sample_seeds(seed ^ 0xB357, len(tokens) // k)):
            group = torch.stack(tokens[i * k : (i + 1) * k]).to(self.device)
            counted = group != PAD_ID
            if motif is not None:
                free = counted & ~motif.known_and_mask(group.shape[1])[1].to(self.device)
                counted = free if bool(free.any()) else counted  # a motif filling it all
            nll = process.nll_bound(
                self.model,
                group,
                generator=torch.Generator(self.device).manual_seed(s),
                samples=RANKING_DRAWS,
                loss_mask=counted,
                family=fam.to(self.device).expand(k),
            )
            out.append(tokens[i * k + int(nll.argmin())])
        return out

    def _fields(self, plan: TokenOptions, seed: int) -> dict[str, Any]:
        record = plan.record()
        record["steps"] = plan.steps or "per_residue"
        return {"seed": seed, **record}

    def _lengths(
        self,
        n: int,
        family: str | None,
        length: int | Sequence[int] | None,
        motif: Motif | None,
        seed: int,
    ) -> list[int]:
        config = self.model.config
        if length is None:
            prior = LengthPrior.from_json(config.lengths)
            lengths = prior.sample(family, n, torch.Generator().manual_seed(seed))
            if motif is not None:
                lengths = [max(k, motif.end) for k in lengths]
        elif isinstance(length, int):
            lengths = [length] * n
        else:
            lengths = [int(k) for k in length]
            if len(lengths) != n:
                raise ValueError(f"got {len(lengths)} lengths for {n} samples")
        for k in lengths:
            if not 1 <= k <= config.max_length:
                raise ValueError(
                    f"length {k} is outside 1..{config.max_length} (the model's max_length)"
                )
            if motif is not None:
                motif.check_fits(k)
        return lengths


def _record(rid: str, sequence: str, fields: dict[str, Any]) -> SeqRecord:
    return SeqRecord(
        Seq(sequence), id=rid, description=format_header(rid, fields), annotations=fields
    )


def _as_protein(record: ProteinRecord | SeqRecord) -> ProteinRecord:
    if isinstance(record, ProteinRecord):
        return record
    family = record.annotations.get("family")
    return ProteinRecord(record.id, str(record.seq), None if family == "none" else family)


def regions_mask(text: str, length: int) -> Tensor:
    """(length,) bool, True inside 1-based inclusive ranges ``"10-20,31,40-45"``."""
    out = torch.zeros(length, dtype=torch.bool)
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(
                f"cannot read region {part!r}: expected START-END or POSITION (1-based)"
            ) from None
        if not 1 <= a <= b <= length:
            raise ValueError(f"region {part!r} is outside 1..{length}")
        out[a - 1 : b] = True
    return out
