"""The denoiser: an ESM-2-style bidirectional transformer (``transformers.EsmForMaskedLM``)
seen as a diffcore ``TokenDenoiser``, with family conditioning and exact length control.

Layout. The sampler works on residues only: x (B, L) holds residue tokens, ``<mask>`` where a
residue is to be generated and ``<pad>`` after the end of a shorter sequence. The network sees
ESM-2's own layout around them::

    <family:NAME> or <cls>   residues ...   <eos>   <pad> ...

so the family is a token in place of ``<cls>`` (``<cls>`` = no family, which also serves as the
unconditional branch of classifier-free guidance), and the length is fixed exactly by where
``<eos>`` sits: a sample has as many residues as it has masks. Like DPLM and MDLM's
time-independent variant, the network is not told t (the share of masks shows it), so samplers
may reuse its output while nothing changed (``time_independent=True``).

ESM-2 weights on disk continue training through ``ProteinDenoiser.from_esm`` (DPLM's recipe).

Block diffusion (``diffusion_block``, BD3-LM): the residues form blocks of that many, generated
left to right, each by masked diffusion given the blocks before it. Attention is block-causal
over the residues; the family token and ``<eos>`` (the length) are conditioning that every
residue sees and that see only each other, so nothing of a later block reaches an earlier one.
In training and scoring the clean residues come as ``context`` and sit after the ESM layout, at
the same positions as their noisy copies (BD3-LM's 2L layout).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from diffcore.nn.attention import attention_mask_for
from diffcore.processes import MaskProcess, block_attention_mask
from diffcore.processes.mask import generated_blocks_end
from diffcore.processes.substitution import SubstitutionProcess
from diffcore.seeding import seeded
from diffprotein.alphabet import (
    BASE_VOCAB_SIZE,
    CLS_ID,
    EOS_ID,
    ESM_VOCAB,
    INPUT_RESIDUE_IDS,
    MASK_ID,
    PAD_ID,
    RESIDUE_IDS,
)
from diffprotein.corruption import CORRUPTIONS, substitution_process

__all__ = [
    "BANNED_LOGIT",
    "PROCESS",
    "EsmShape",
    "ProteinDenoiser",
    "ProteinDenoiserConfig",
    "load_preset",
    "process_for",
    "wrap_sequences",
]

# Logit of tokens that can never be a residue. Finite, so classifier-free guidance (a lerp of
# two logit tensors) stays finite where both are banned: lerp(-inf, -inf, w) is nan.
BANNED_LOGIT = -1e9
ESM_MAX_LENGTH = 1022  # residues an ESM-2 checkpoint takes: 1024 positions less <cls> and <eos>

PROCESS = MaskProcess(mask_id=MASK_ID, vocab_size=BASE_VOCAB_SIZE)


def process_for(block: int | None, mask_range: tuple[float, float] = (0.0, 1.0)) -> MaskProcess:
    """The masking process of a denoiser with ``config.diffusion_block`` = ``block``: PROCESS,
    or its block-diffusion form (every block masked on its own, the clean residues as context);
    ``mask_range``: an expert's masked shares (``MaskProcess.mask_range``)."""
    if block is None and tuple(mask_range) == (0.0, 1.0):
        return PROCESS
    return MaskProcess(MASK_ID, BASE_VOCAB_SIZE, block=block, mask_range=tuple(mask_range))


@dataclass(frozen=True)
class EsmShape:
    """The transformer's shape (defaults: ESM-2 8M, ``esm2_t6_8M_UR50D``)."""

    hidden_size: int = 320  # width of every token's representation
    num_layers: int = 6  # transformer blocks
    num_heads: int = 20  # attention heads (hidden_size must divide by it)
    intermediate_size: int = 1280  # feed-forward width
    max_length: int = ESM_MAX_LENGTH  # residues per sequence (ESM-2's limit)
    position_embedding_type: str = "rotary"  # ESM-2 rotary; "absolute" for ESM-1b-style
    dropout: float = 0.0  # hidden and attention dropout (ESM-2 trains without)
    layer_norm_eps: float = 1e-5  # ESM-2's value
    emb_layer_norm_before: bool = False  # ESM-2 has no norm on the embeddings

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{type(self).__name__}.{name} must be an int >= 1, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be a multiple of num_heads {self.num_heads}"
            )
        if self.position_embedding_type not in ("rotary", "absolute"):
            raise ValueError(
                "position_embedding_type must be 'rotary' or 'absolute', got "
                f"{self.position_embedding_type!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")

    def esm_config(self, vocab_size: int, **extra: Any) -> Any:
        """The ``transformers.EsmConfig`` of this shape. ``token_dropout`` is off: ESM-2 scales
        embeddings by 0.88 / (1 - mask share), which explodes at diffusion's high mask shares."""
        from transformers import EsmConfig

        return EsmConfig(
            vocab_size=vocab_size,
            mask_token_id=MASK_ID,
            pad_token_id=PAD_ID,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            # +2 for <cls>/<eos>, +2 because ESM numbers positions from padding_idx + 1
            max_position_embeddings=self.max_length + 4,
            position_embedding_type=self.position_embedding_type,
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
            layer_norm_eps=self.layer_norm_eps,
            emb_layer_norm_before=self.emb_layer_norm_before,
            token_dropout=False,
            **extra,
        )


@dataclass(frozen=True)
class ProteinDenoiserConfig(EsmShape):
    """The denoiser: a shape, its families, the lengths seen in training, and what it undoes."""

    families: tuple[str, ...] = ()  # one conditioning token each; () = unconditional only
    lengths: dict[str, list[list[int]]] = field(default_factory=dict)  # LengthPrior.to_json()
    diffusion_block: int | None = None  # residues per block of a block-diffusion model
    # "mask", or wrong residues: "substitution" (uniform) / "blosum" (diffprotein.corruption);
    # folders saved before this field existed are masked models, which the default keeps
    corruption: str = "mask"
    # the masked shares a masked model trained on: (0, 1) all of them, else an expert
    mask_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "mask_range", tuple(float(v) for v in self.mask_range))
        if self.mask_range != (0.0, 1.0):
            if self.corruption != "mask":
                raise ValueError(
                    f"mask_range {self.mask_range} belongs to masked models, not to corruption "
                    f"{self.corruption!r}"
                )
            process_for(self.diffusion_block, self.mask_range)  # checks the range
        block = self.diffusion_block
        if block is not None and (
            isinstance(block, bool) or not isinstance(block, int) or block < 1
        ):
            raise ValueError(f"diffusion_block must be a positive integer or None, got {block!r}")
        if len(set(self.families)) != len(self.families):
            raise ValueError(f"families must be distinct, got {self.families}")
        if self.corruption not in CORRUPTIONS:
            raise ValueError(
                f"corruption must be one of {', '.join(CORRUPTIONS)}, got {self.corruption!r}"
            )
        if self.corruption != "mask" and block is not None:
            raise ValueError(
                f"corruption {self.corruption!r} cannot be combined with diffusion_block "
                f"{block}: block diffusion generates each block by masking"
            )

    @property
    def substitution(self) -> SubstitutionProcess | None:
        """The model's ``SubstitutionProcess`` (None for a masked-diffusion model)."""
        return substitution_process(self.corruption)


def load_preset(name: str, **overrides: Any) -> dict[str, Any]:
    """Shape fields of a named preset in ``shared/presets/protein.json`` (or a JSON file path
    given as ``name=path:preset``), with ``overrides`` applied."""
    from diffcore.nn.presets import read_preset

    path, sep, preset = name.rpartition(":")
    path, preset = (path, preset) if sep else ("protein.json", name)
    fields = read_preset(path, preset)
    shape = {f.name for f in dataclasses.fields(EsmShape)}
    unknown = sorted(set(fields) - shape)
    if unknown:
        raise ValueError(f"{path}: preset {preset!r} has unknown fields {unknown}")
    return {**fields, **overrides}


def wrap_sequences(x: Tensor, first: Tensor) -> tuple[Tensor, Tensor]:
    """ESM input (B, L + 2) and its attention mask for residues x (B, L) with trailing
    ``<pad>``: ``first`` (B,) token, the residues, ``<eos>`` after the last one, padding."""
    if x.dtype.is_floating_point or x.dtype == torch.bool or x.ndim != 2:
        raise ValueError(f"x must be (B, L) integer tokens, got {x.dtype} {tuple(x.shape)}")
    is_pad = x == PAD_ID
    if bool((is_pad[:, :-1] & ~is_pad[:, 1:]).any()):
        raise ValueError("<pad> may only follow a sequence's residues, never precede one")
    lengths = (~is_pad).sum(1)
    pad = torch.full((x.shape[0], 1), PAD_ID, dtype=torch.long, device=x.device)
    full = torch.cat([first.to(x)[:, None], x.long(), pad], dim=1)
    full = full.scatter(1, (lengths + 1)[:, None], EOS_ID)
    return full, full != PAD_ID


class ProteinDenoiser(nn.Module):
    """``D(x, t, family=None, allow_unknown=True) -> logits (B, L, 33)`` over ESM-2's tokens.

    x: (B, L) residue tokens / ``<mask>`` / trailing ``<pad>``; t: (B,) ignored (see module
    docstring); family: (B,) long index into ``config.families``, -1 = none. Logits of tokens
    that are not residues get ``BANNED_LOGIT``; ``allow_unknown=False`` bans ``X`` too
    (sampling: never generate an unknown residue; training keeps it, as data contains it).
    context: (B, L) the clean residues, for a block-diffusion model in training and scoring
    (``MaskProcess(block=...)`` passes it); without it a block model reads x block-causally.
    """

    config_class: ClassVar[type] = ProteinDenoiserConfig

    def __init__(self, config: ProteinDenoiserConfig) -> None:
        super().__init__()
        from transformers import EsmForMaskedLM

        self.config = config
        vocab = BASE_VOCAB_SIZE + len(config.families)
        self.esm = EsmForMaskedLM(config.esm_config(vocab))
        allowed = torch.zeros(BASE_VOCAB_SIZE, dtype=torch.bool)
        allowed[list(INPUT_RESIDUE_IDS)] = True
        self.register_buffer("_allowed", allowed, persistent=False)
        standard = torch.zeros(BASE_VOCAB_SIZE, dtype=torch.bool)
        standard[list(RESIDUE_IDS)] = True
        self.register_buffer("_standard", standard, persistent=False)

    def first_tokens(self, family: Tensor | None, batch: int, device: Any) -> Tensor:
        """Token (B,) at position 0: the family's token, or ``<cls>`` for -1 / None."""
        if family is None:
            return torch.full((batch,), CLS_ID, dtype=torch.long, device=device)
        family = torch.as_tensor(family, device=device).long().reshape(-1).expand(batch)
        n = len(self.config.families)
        if bool(((family < -1) | (family >= n)).any()):
            raise ValueError(
                f"family indices must lie in [-1, {n}) for a model with families "
                f"{self.config.families}, got {family.tolist()}"
            )
        return torch.where(family < 0, CLS_ID, BASE_VOCAB_SIZE + family)

    def forward(
        self,
        x: Tensor,
        t: Tensor | None = None,
        family: Tensor | None = None,
        allow_unknown: bool = True,
        context: Tensor | None = None,
        skip_later_blocks: bool = False,
    ) -> Tensor:
        if x.shape[-1] > self.config.max_length:
            raise ValueError(
                f"sequences of {x.shape[-1]} residues exceed this model's max_length "
                f"{self.config.max_length}"
            )
        full, attention = wrap_sequences(x, self.first_tokens(family, x.shape[0], x.device))
        if self.config.diffusion_block is None:
            if context is not None:
                raise ValueError("context (the clean residues) is for block-diffusion models only")
            logits = self.esm(input_ids=full, attention_mask=attention.long()).logits
        elif skip_later_blocks and context is None:
            logits = self._current_block_logits(full, attention)
        else:
            logits = self._block_logits(full, attention, context)
        logits = logits[:, 1 : x.shape[1] + 1, :BASE_VOCAB_SIZE].float()
        allowed = self._allowed if allow_unknown else self._standard
        return logits.masked_fill(~allowed, BANNED_LOGIT)

    def _current_block_logits(self, full: Tensor, keep: Tensor) -> Tensor:
        """``_block_logits`` without the residues after the first block that holds a mask (in
        any row): block-causal attention makes every earlier logit the same without them, and a
        block-by-block sampler never reads theirs (0 here). Each row keeps its ``<eos>``, at its
        own position, since every block reads the length from it."""
        batch, width = full.shape
        length, block = width - 2, self.config.diffusion_block
        end = generated_blocks_end(full[:, 1 : length + 1] == MASK_ID, block)  # residues kept
        if end == length:
            return self._block_logits(full, keep, None)
        eos = (full == EOS_ID).float().argmax(1)
        # a row whose <eos> is already kept takes its last column instead: padding for it
        extra = torch.where(eos > end, eos, width - 1)
        index = torch.arange(end + 1, device=full.device).expand(batch, -1)
        index = torch.cat([index, extra[:, None]], 1)
        head = self._block_logits(full.gather(1, index), keep.gather(1, index), None, index)
        tail = head.new_zeros(batch, width - end - 1, head.shape[-1])
        return torch.cat([head[:, : end + 1], tail], 1)

    def _block_logits(
        self,
        full: Tensor,
        keep: Tensor,
        context: Tensor | None,
        positions: Tensor | None = None,
    ) -> Tensor:
        """Logits (B, L + 2 [+ L], V) of the ESM layout ``full`` (B, L + 2) under block-causal
        attention, with the clean residues ``context`` (B, L) appended when given.
        ``positions`` (B, L + 2): each column's position, when not its index (a layout cut
        short by ``_current_block_logits``)."""
        batch, width = full.shape
        length = width - 2
        block = self.config.diffusion_block
        device = full.device
        index = torch.arange(width, device=device)
        residue = (index >= 1) & (index <= length)  # (W,) residue columns; the rest: first, eos
        is_residue = residue & keep & (full != EOS_ID)
        is_cond = keep & ~is_residue  # the family token and <eos>
        columns = index[1 : length + 1]  # where block_attention_mask's positions sit
        positions = index.expand(batch, -1) if positions is None else positions
        if context is not None:
            if context.shape != (batch, length):
                raise ValueError(
                    f"context must be the clean residues {(batch, length)}, got "
                    f"{tuple(context.shape)}"
                )
            full = torch.cat([full, context.to(full)], 1)
            clean = context != PAD_ID
            is_residue = torch.cat([is_residue, clean], 1)
            is_cond = torch.cat([is_cond, torch.zeros_like(clean)], 1)
            keep = torch.cat([keep, clean], 1)
            columns = torch.cat([columns, width + torch.arange(length, device=device)])
            # each clean residue takes the position of its noisy copy
            positions = torch.cat([positions, positions[:, 1 : length + 1]], 1)
        total = full.shape[1]
        pattern = block_attention_mask(length, block, context=context is not None, device=device)
        residue_rule = torch.zeros(total, total, dtype=torch.bool, device=device)
        residue_rule[columns[:, None], columns[None, :]] = pattern
        allowed = (is_residue[:, :, None] & is_residue[:, None, :] & residue_rule) | (
            keep[:, :, None] & is_cond[:, None, :]
        )
        # padding (and any query that may see no key) must see itself, or its row turns NaN
        allowed |= torch.eye(total, dtype=torch.bool, device=device)
        if self.config.position_embedding_type == "absolute":  # ESM counts from padding_idx + 1
            positions = positions + PAD_ID + 1
        embeddings = self.esm.esm.embeddings(
            input_ids=full, attention_mask=keep.long(), position_ids=positions
        )
        return self.esm(
            inputs_embeds=embeddings,
            attention_mask=attention_mask_for(self.esm, allowed),
            position_ids=positions,
        ).logits

    @classmethod
    def from_esm(
        cls, directory: str | Path, families: tuple[str, ...] = (), **overrides: Any
    ) -> ProteinDenoiser:
        """Start from ESM-2 weights a user has on disk (a ``transformers`` folder with
        config.json and model.safetensors, e.g. a local copy of ``esm2_t6_8M_UR50D``).

        Each family token starts as a copy of ``<cls>``, so the model begins as the pretrained
        (unconditional) one. ``overrides``: ProteinDenoiserConfig fields (e.g. ``lengths``,
        ``max_length`` below the checkpoint's). Pickled weights (.bin) are refused.
        """
        from transformers import EsmForMaskedLM

        directory = Path(directory)
        vocab_file = directory / "vocab.txt"
        if vocab_file.is_file():
            vocab = tuple(line.strip() for line in vocab_file.read_text().splitlines() if line)
            if vocab != ESM_VOCAB:
                raise ValueError(
                    f"{vocab_file} is not ESM-2's 33-token vocabulary; diffprotein's token ids "
                    "follow ESM-2's, so only ESM-2-style checkpoints can be continued"
                )
        if not (directory / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"{directory} has no model.safetensors; only safetensors weights are loaded "
                "(pickled .bin files are refused)"
            )
        pretrained = EsmForMaskedLM.from_pretrained(str(directory), use_safetensors=True)
        hf = pretrained.config
        if hf.vocab_size != BASE_VOCAB_SIZE or hf.mask_token_id != MASK_ID:
            raise ValueError(
                f"{directory}: vocab_size {hf.vocab_size}, mask id {hf.mask_token_id}; expected "
                f"ESM-2's {BASE_VOCAB_SIZE} tokens with <mask> = {MASK_ID}"
            )
        shape = {
            "hidden_size": hf.hidden_size,
            "num_layers": hf.num_hidden_layers,
            "num_heads": hf.num_attention_heads,
            "intermediate_size": hf.intermediate_size,
            "max_length": hf.max_position_embeddings - 4,
            "position_embedding_type": hf.position_embedding_type,
            "layer_norm_eps": hf.layer_norm_eps,
            "emb_layer_norm_before": bool(hf.emb_layer_norm_before),
        }
        config = ProteinDenoiserConfig(**{**shape, "families": tuple(families), **overrides})
        model = cls(config)
        state = pretrained.state_dict()
        extra = len(config.families)
        for key in ("esm.embeddings.word_embeddings.weight", "lm_head.decoder.weight"):
            if key in state:
                rows = state[key][CLS_ID : CLS_ID + 1].expand(extra, -1)
                state[key] = torch.cat([state[key], rows])
        state["lm_head.bias"] = torch.cat(
            [state["lm_head.bias"], state["lm_head.bias"][:1].expand(extra)]
        )
        model.esm.load_state_dict(state, strict=False)
        missing = set(model.esm.state_dict()) - set(state)
        if missing - {"lm_head.decoder.weight"}:  # the decoder is tied to the embeddings
            raise ValueError(f"{directory} lacks weights: {sorted(missing)[:5]}")
        return model


def training_shape(
    preset: str, *, from_esm: bool = False, max_length: int | None = None
) -> dict[str, Any]:
    """The shape fields of a model to train: the ``preset``'s, with ``max_length`` when given;
    continuing an ESM-2 checkpoint (``from_esm``), the checkpoint sets the shape and the length
    is ESM-2's full ``ESM_MAX_LENGTH`` unless ``max_length`` says otherwise."""
    shape = load_preset(preset)
    if from_esm:
        shape["max_length"] = ESM_MAX_LENGTH
    if max_length:
        shape["max_length"] = max_length
    return shape


def model_for_training(
    objective: str,
    records: Any,
    shape: dict[str, Any],
    *,
    families: tuple[str, ...] = (),
    from_esm: str | Path | None = None,
    diffusion_block: int | None = None,
    corruption: str = "mask",
    mask_range: tuple[float, float] = (0.0, 1.0),
    seed: int | None = None,
) -> nn.Module:
    """A fresh model to train on ``records`` (``ProteinRecord``s): the denoiser (``objective``
    "diffusion"; from ESM-2 weights in the folder ``from_esm`` when given; conditioned on
    ``families``, () for none; undoing ``corruption``, see ``diffprotein.corruption``), its
    autoregressive peer ("autoregressive") or the family classifier ("classifier", whose labels
    are ``families`` and "other"). ``mask_range``: the denoiser's masked shares (an expert).
    seed: the initial weights' (None: torch's global generator)."""
    partial = tuple(mask_range) != (0.0, 1.0)
    if objective != "diffusion" and (
        corruption != "mask" or diffusion_block is not None or partial
    ):
        raise ValueError(
            f"corruption, diffusion_block and mask_range are the denoiser's (objective "
            f"'diffusion'), not the {objective!r} model's"
        )
    denoiser = {"diffusion_block": diffusion_block, "corruption": corruption}
    denoiser |= {"mask_range": tuple(mask_range)} if partial else {}
    with seeded(seed):
        return _fresh_model(objective, records, shape, families, from_esm, denoiser)


def _fresh_model(
    objective: str,
    records: Any,
    shape: dict[str, Any],
    families: tuple[str, ...],
    from_esm: str | Path | None,
    denoiser: dict[str, Any],
) -> nn.Module:
    from diffprotein import judges
    from diffprotein.conditioning import LengthPrior
    from diffprotein.training import build_denoiser

    if objective == "diffusion" and from_esm:
        lengths = LengthPrior.from_records((r.family, len(r.sequence)) for r in records)
        return ProteinDenoiser.from_esm(
            from_esm,
            families=families,
            lengths=lengths.to_json(),
            max_length=shape["max_length"],
            **denoiser,
        )
    if objective == "diffusion":
        return build_denoiser(records, shape, conditional=bool(families), **denoiser)
    if objective == "autoregressive":
        return judges.ProteinLM(judges.ProteinLMConfig(**shape, families=families))
    if objective == "classifier":
        labels = judges.family_labels(families)
        return judges.FamilyClassifier(judges.FamilyClassifierConfig(**shape, labels=labels))
    raise ValueError(
        f"objective must be 'diffusion', 'autoregressive' or 'classifier', got {objective!r}"
    )


def train_for_objective(
    model: nn.Module,
    records: Any,
    config: Any,
    out_dir: str | Path,
    *,
    family_dropout: float = 0.1,
    background: Any = (),
    device: str | torch.device | None = None,
) -> Any:
    """Train a model of :func:`model_for_training` with its own trainer: the denoiser's (with
    ``family_dropout``), the autoregressive peer's, or the classifier's (``background``: the
    records of "other" proteins); returns diffcore's ``TrainResult``."""
    from diffprotein import judges
    from diffprotein.training import train_denoiser

    if isinstance(model, ProteinDenoiser):
        dropout = family_dropout
        return train_denoiser(
            model, records, config, out_dir, family_dropout=dropout, device=device
        )
    if isinstance(model, judges.ProteinLM):
        return judges.train_lm(model, records, config, out_dir, device=device)
    return judges.train_classifier(
        model, records, config, out_dir, background=background, device=device
    )
