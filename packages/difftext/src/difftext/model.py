"""The denoiser: any ``transformers`` masked LM, whose mask token is the absorbing state.

- scratch: ``AutoModelForMaskedLM.from_config`` on a config built from a named shape in
  ``shared/presets/text.json`` (``masked_lm_config``), sized to the tokenizer and block length;
- continued pre-training: ``AutoModelForMaskedLM.from_pretrained(local_dir)`` on a checkpoint on
  disk (safetensors only, offline, never remote code);
- the autoregressive peer of the evaluation: a GPT-2 config of the same width, depth, heads
  and parameter count (``causal_lm_config``).

The presets use ModernBERT (Warner et al. 2024, https://arxiv.org/abs/2412.13663): pre-norm
with rotary position embeddings. At the sizes a CPU trains, BERT's learned absolute positions
left the denoiser stuck at the unigram loss for hundreds of steps where ModernBERT learns
from its neighbours at once (measured on Tiny Shakespeare; ``bert-small`` is kept to compare).

A diffusion model is trained on masking (``MaskProcess``, the default) or on substitution
(``SubstitutionProcess``: wrong tokens instead of masks, uniform over the tokens it may write),
which ``TextModel.corruption`` records.

A trained model lives in a directory (``save_text_model``): the transformers ``config.json``, the
weights in ``model.safetensors`` (written by ``diffcore.io``), the tokenizer files and
``difftext.json`` (what kind of model it is, its block length and its corruption).
``from_pretrained`` of transformers reads the same directory.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from transformers import (
    CONFIG_MAPPING,
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    GPT2Config,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from diffcore.io import atomic_directory, save_weights
from diffcore.nn.attention import attention_mask_for
from diffcore.nn.presets import read_preset
from diffcore.processes import block_attention_mask
from diffcore.processes.mask import generated_blocks_end
from diffcore.processes.substitution import SubstitutionProcess, uniform_replacement
from difftext.tokenizer import banned_ids, load_tokenizer, start_id

__all__ = [
    "CORRUPTIONS",
    "META_NAME",
    "Corruption",
    "ModelKind",
    "TextDenoiser",
    "TextModel",
    "causal_lm_config",
    "load_preset",
    "load_text_model",
    "masked_lm_config",
    "parameter_count",
    "save_text_model",
    "set_dropout",
]

ModelKind = Literal["diffusion", "autoregressive"]
Corruption = Literal["mask", "substitution"]
CORRUPTIONS: tuple[Corruption, ...] = ("mask", "substitution")
META_NAME = "difftext.json"
PRESET_FILE = "text.json"
BANNED_LOGIT = -1e4
# Dropout is off unless a preset or ``set_dropout`` asks for it. The names config families use
# for their (non-classifier) dropout: BERT-likes, ModernBERT, GPT-2; residual-stream dropout
# (hidden states, embeddings, MLP outputs) apart from dropout on attention probabilities.
_RESIDUAL_DROPOUT = (
    "hidden_dropout_prob",
    "dropout",
    "embedding_dropout",
    "mlp_dropout",
    "resid_pdrop",
    "embd_pdrop",
)
_ATTENTION_DROPOUT = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")


def set_dropout(config: PretrainedConfig, p: float, attention: float = 0.0) -> PretrainedConfig:
    """Set the residual-stream dropout of ``config`` (hidden states, embeddings, MLP outputs) to
    ``p`` and the dropout on attention probabilities to ``attention``. Attention dropout is off by
    default because it forces scaled-dot-product attention off its fused kernels: on the 2-core
    CPU a ModernBERT training step took 1.06 s with it at 0.2 and 0.64 s without (0.55 s with no
    dropout at all; preset small, 32 x 256 tokens, bf16)."""
    for name, value in (("dropout", p), ("attention", attention)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must lie in [0, 1), got {value}")
    for fields, value in ((_RESIDUAL_DROPOUT, p), (_ATTENTION_DROPOUT, attention)):
        for name in fields:
            if hasattr(config, name):
                setattr(config, name, value)
    return config


def dropout_of(config: PretrainedConfig, attention: bool = False) -> float:
    """The largest residual-stream (or, with ``attention``, attention-probability) dropout
    probability ``config`` sets (0 when it has none)."""
    fields = _ATTENTION_DROPOUT if attention else _RESIDUAL_DROPOUT
    values = [getattr(config, n) for n in fields if hasattr(config, n)]
    return max([float(v) for v in values if v is not None], default=0.0)


def load_preset(name: str, file: str | os.PathLike | None = None) -> dict[str, Any]:
    """The fields of preset ``name`` from ``shared/presets/text.json`` (or ``file``)."""
    return read_preset(file if file is not None else PRESET_FILE, name)


def masked_lm_config(
    fields: dict[str, Any], tokenizer: PreTrainedTokenizerBase, block_size: int
) -> PretrainedConfig:
    """A masked-LM config from preset ``fields`` (``model_type`` plus that type's config fields),
    with the vocabulary and special tokens of ``tokenizer`` and ``block_size`` positions."""
    fields = dict(fields)
    model_type = fields.pop("model_type", "modernbert")
    if model_type not in CONFIG_MAPPING:
        raise ValueError(f"unknown model_type {model_type!r} in the preset")
    known = {f.name for f in dataclasses.fields(CONFIG_MAPPING[model_type])}
    # the config class's own special ids belong to some other vocabulary: replace them
    special = {
        f"{role}_token_id": getattr(tokenizer, f"{role}_token_id", None)
        for role in ("pad", "bos", "eos", "cls", "sep")
        if f"{role}_token_id" in known
    }
    try:
        config = AutoConfig.for_model(
            model_type,
            vocab_size=len(tokenizer),
            max_position_embeddings=block_size,
            **{**special, **fields},
        )
    except (ValueError, TypeError) as err:
        raise ValueError(f"cannot build a {model_type!r} config from {fields}: {err}") from err
    for name in _RESIDUAL_DROPOUT + _ATTENTION_DROPOUT:
        if hasattr(config, name) and name not in fields:
            setattr(config, name, 0.0)
    return config


def parameter_count(config: PretrainedConfig) -> int:
    """Parameters of the masked LM ``config`` describes, counted without allocating them."""
    with torch.device("meta"):
        model = AutoModelForMaskedLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def _field(config: PretrainedConfig, name: str) -> Any:
    value = getattr(config, name, None)
    if value is None:
        raise ValueError(
            f"the {config.model_type!r} config has no {name!r}; the autoregressive peer copies "
            "hidden_size, num_hidden_layers and num_attention_heads"
        )
    return value


def causal_lm_config(
    masked: PretrainedConfig, tokenizer: PreTrainedTokenizerBase, block_size: int
) -> GPT2Config:
    """The autoregressive peer of the masked LM ``masked``: a GPT-2 config of the same width,
    depth and heads, whose feed-forward width makes the two parameter counts equal (masked LMs
    differ in their feed-forward blocks: GELU or GLU, biases or none)."""
    d, n = _field(masked, "hidden_size"), _field(masked, "num_hidden_layers")
    vocab = len(tokenizer)
    # GPT-2: tied embeddings (V + P) d, final norm 2d; per layer 4d^2 + 9d (attention, norms,
    # the feed-forward output bias) plus (2d + 1) I for a feed-forward block of width I.
    fixed = (vocab + block_size) * d + 2 * d + n * (4 * d * d + 9 * d)
    inner = round((parameter_count(masked) - fixed) / (n * (2 * d + 1)))
    if inner < 1:
        raise ValueError(
            f"a GPT-2 of width {d} and depth {n} cannot match the masked LM's parameter count"
        )
    return GPT2Config(
        vocab_size=vocab,
        n_positions=block_size,
        n_embd=d,
        n_layer=n,
        n_head=_field(masked, "num_attention_heads"),
        n_inner=inner,
        activation_function="gelu",
        resid_pdrop=dropout_of(masked),  # the masked LM's regularisation, whatever its names
        embd_pdrop=dropout_of(masked),
        attn_pdrop=dropout_of(masked, attention=True),
        bos_token_id=start_id(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


@dataclass(frozen=True)
class TextDenoiser:
    """A masked LM as a diffcore ``TokenDenoiser``: ``D(x, t, **cond) -> logits (B, L, V)``.

    x: (B, L) long, ``mask_id`` where a token is hidden. t is ignored: the masked LM reads the
    masked share off its input (MDLM found time conditioning unnecessary), so samplers may
    reuse a forward pass while x is unchanged (``time_independent=True``).
    cond: ``attention_mask`` (B, L) (0 at padding) and ``hide`` (B, L) bool, positions to mask
    before the call (classifier-free guidance's unconditional branch masks the prompt, as in
    LLaDA). Tokens in ``banned`` never occur in text (padding, BOS...) and get the logit
    ``BANNED_LOGIT``: finite, so that guidance's extrapolation ``u + w (c - u)`` stays finite
    (-inf - -inf is NaN), yet far below any real logit (exp(-1e4) underflows to 0).
    ``skip_done``: rows with no mask left are not run through the model (their logits are 0):
    a sampler reveals nothing there, and rows that an adaptive sampler (a confidence threshold,
    an entropy bound) finishes early stop costing compute while the rest of the batch goes on.
    In a block-diffusion model it also leaves out the positions after the blocks being
    generated (the first block with a mask, in each row): block-causal attention makes the
    earlier positions' logits the same without them, and a block-by-block sampler never reads
    theirs (0).
    ``diffusion_block``: a block-diffusion model (``diffcore.processes.MaskProcess(block=...)``):
    attention is block-causal (``block_attention_mask``), and with ``context`` (the clean
    tokens, in training and scoring) the model reads x and context side by side, 2L positions,
    so that every block is predicted from its own noisy tokens and the clean blocks before it.
    """

    model: nn.Module
    mask_id: int
    banned: tuple[int, ...] = ()
    skip_done: bool = False
    diffusion_block: int | None = None

    def __call__(
        self,
        x: Tensor,
        t: Tensor | None = None,
        *,
        attention_mask: Tensor | None = None,
        hide: Tensor | None = None,
        context: Tensor | None = None,
    ) -> Tensor:
        if hide is not None:
            x = torch.where(hide, self.mask_id, x)
        rows = (x == self.mask_id).any(1) if self.skip_done else None
        if rows is not None and not bool(rows.all()):
            logits = torch.zeros((*x.shape, self.model.config.vocab_size), device=x.device)
            if bool(rows.any()):
                part = None if attention_mask is None else attention_mask[rows]
                clean = None if context is None else context[rows]
                active = self._logits(x[rows], part, clean)
                logits = logits.to(active.dtype).index_put((rows,), active)
        else:
            logits = self._logits(x, attention_mask, context)
        if self.banned:
            index = torch.tensor(self.banned, device=logits.device)
            logits = logits.index_fill(-1, index, BANNED_LOGIT)
        return logits

    def _logits(self, x: Tensor, attention_mask: Tensor | None, context: Tensor | None) -> Tensor:
        if self.diffusion_block is None:
            if context is not None:
                raise ValueError("context (the clean tokens) is for block-diffusion models only")
            return self.model(input_ids=x, attention_mask=attention_mask).logits
        batch, length = x.shape
        if self.skip_done and context is None:
            end = generated_blocks_end(x == self.mask_id, self.diffusion_block)
            if end < length:
                part = None if attention_mask is None else attention_mask[:, :end]
                head = self._logits(x[:, :end], part, None)
                return torch.cat([head, head.new_zeros(batch, length - end, head.shape[-1])], 1)
        layout = block_attention_mask(
            length, self.diffusion_block, context=context is not None, device=x.device
        )
        positions = None
        if context is not None:
            x = torch.cat([x, context], 1)
            positions = torch.arange(length, device=x.device).repeat(2).expand(batch, -1)
            if attention_mask is not None:
                attention_mask = attention_mask.repeat(1, 2)
        allowed = layout[None]
        if attention_mask is not None:
            allowed = allowed & attention_mask.bool()[:, None, :]
        # a padding query that may see no key would turn its row (and anything reading it) NaN
        allowed = allowed | torch.eye(len(layout), dtype=torch.bool, device=x.device)
        out = self.model(
            input_ids=x,
            attention_mask=attention_mask_for(self.model, allowed),
            position_ids=positions,
        )
        return out.logits[:, :length]


@dataclass(frozen=True)
class TextModel:
    """A model with its tokenizer. kind: "diffusion" (a masked LM) or "autoregressive" (the
    peer); block_size: the sequence length it was trained on; diffusion_block: the tokens per
    block of a block-diffusion model (None: masked diffusion over the whole sequence);
    corruption: what a diffusion model learned to undo, "mask" (absorbing state) or
    "substitution" (wrong tokens, see ``substitution``); mask_range: the masked shares a masked
    model trained on ((0, 1): all; else an expert, see ``MaskProcess.mask_range``)."""

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    kind: ModelKind
    block_size: int
    diffusion_block: int | None = None
    corruption: Corruption = "mask"
    mask_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mask_range", tuple(float(v) for v in self.mask_range))
        if self.mask_range != (0.0, 1.0) and (self.kind, self.corruption) != ("diffusion", "mask"):
            raise ValueError(
                f"mask_range {self.mask_range} belongs to masked diffusion models, not to "
                f"{'a substitution' if self.kind == 'diffusion' else 'an autoregressive'} model"
            )
        if self.corruption not in CORRUPTIONS:
            raise ValueError(
                f"corruption must be 'mask' or 'substitution', got {self.corruption!r}"
            )
        if self.corruption == "substitution" and (
            self.kind != "diffusion" or self.diffusion_block is not None
        ):
            # block diffusion's samplers and bound go block by block over masks: none for
            # wrong tokens, which may sit anywhere
            other = "a block-diffusion" if self.kind == "diffusion" else f"an {self.kind}"
            raise ValueError(
                f"substitution is a corruption of whole-sequence diffusion models, not of "
                f"{other} model"
            )
        block = self.diffusion_block
        if block is not None:
            if self.kind != "diffusion":
                raise ValueError("diffusion_block belongs to diffusion models")
            if not isinstance(block, int) or isinstance(block, bool) or block < 1:
                raise ValueError(f"diffusion_block must be a positive integer, got {block!r}")
            kinds = getattr(self.model.config, "layer_types", None) or ()
            if any(kind != "full_attention" for kind in kinds):  # checked once, not per pass
                raise ValueError(
                    "block diffusion needs global attention in every layer; this config has "
                    f"{sorted(set(kinds))} (ModernBERT: global_attn_every_n_layers=1)"
                )

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.vocab_size)

    @property
    def mask_id(self) -> int:
        return int(self.tokenizer.mask_token_id)

    @functools.cached_property
    def substitution(self) -> SubstitutionProcess | None:
        """The process of a substitution model: each token replaced by one drawn uniformly
        from the tokens a sample may hold (not banned for generating, inside the tokenizer's
        vocabulary); None for any other model. Cached: the (V, V) matrix is built once."""
        return uniform_substitution(self) if self.corruption == "substitution" else None

    def denoiser(self, *, generating: bool = False) -> TextDenoiser:
        """The diffusion model as a ``TokenDenoiser``, banning tokens that are never text and
        ids beyond the tokenizer's vocabulary (generating: UNK too, see ``banned_ids``, and
        rows with nothing left to reveal skip the model, unless it is a substitution model,
        whose rows hold no mask after the start yet still change)."""
        if self.kind != "diffusion":
            raise ValueError("only a diffusion (masked LM) model is a denoiser")
        banned = banned_ids(self.tokenizer, generating=generating)
        beyond = range(len(self.tokenizer), self.vocab_size)
        return TextDenoiser(
            self.model,
            self.mask_id,
            (*banned, *beyond),
            skip_done=generating and self.corruption == "mask",
            diffusion_block=self.diffusion_block,
        )


def uniform_substitution(text_model: TextModel) -> SubstitutionProcess:
    """Each token replaced by one drawn uniformly from the tokens a sample may hold (not banned
    for generating, inside the tokenizer's vocabulary): a substitution model's process, and
    how a level predictor learns what wrong tokens look like."""
    banned = set(banned_ids(text_model.tokenizer, generating=True))  # mask, padding, BOS, UNK..
    tokens = [i for i in range(len(text_model.tokenizer)) if i not in banned]
    return SubstitutionProcess(
        uniform_replacement(text_model.vocab_size, tokens), text_model.mask_id
    )


def save_text_model(text_model: TextModel, directory: str | os.PathLike) -> Path:
    """Write a complete model directory atomically (see the module docstring)."""
    model = text_model.model
    with atomic_directory(directory) as tmp:
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(tmp)
        save_weights(model, tmp / "model.safetensors")
        text_model.tokenizer.save_pretrained(tmp)
        meta: dict[str, Any] = {"kind": text_model.kind, "block_size": text_model.block_size}
        if text_model.diffusion_block is not None:
            meta["diffusion_block"] = text_model.diffusion_block
        if text_model.kind == "diffusion":
            meta["corruption"] = text_model.corruption
        if text_model.mask_range != (0.0, 1.0):
            meta["mask_range"] = list(text_model.mask_range)
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return Path(directory)


def _model_dir(directory: Path) -> Path:
    """A run folder (``diffuse train text --out``) stands for its ``model/`` folder."""
    if (
        not (directory / "config.json").is_file()
        and (directory / "model" / "config.json").is_file()
    ):
        return directory / "model"
    return directory


def _kind_of(directory: Path, config: PretrainedConfig) -> ModelKind:
    meta = directory / META_NAME
    if meta.is_file():
        kind = json.loads(meta.read_text()).get("kind")
        if kind in ("diffusion", "autoregressive"):
            return kind
        raise ValueError(f"{meta}: kind must be 'diffusion' or 'autoregressive', got {kind!r}")
    archs = config.architectures or []
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    return "autoregressive" if causal else "diffusion"


def load_text_model(
    directory: str | os.PathLike, *, kind: ModelKind | None = None, device: Any = "cpu"
) -> TextModel:
    """A model directory (ours, or any transformers masked / causal LM saved with its tokenizer
    and safetensors weights) -> ``TextModel`` in eval mode. kind overrides the detection."""
    path = _model_dir(Path(directory))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a model directory (it has no config.json)")
    if not any((path / f).is_file() for f in ("model.safetensors", "model.safetensors.index.json")):
        pickles = sorted(
            p.name for p in path.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt")
        )
        found = f" (it has only {', '.join(pickles)}: pickles are never loaded)" if pickles else ""
        raise ValueError(
            f"{path} has no model.safetensors{found}; convert the weights to safetensors in a "
            "trusted environment"
        )
    config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    kind = kind or _kind_of(path, config)
    auto = AutoModelForMaskedLM if kind == "diffusion" else AutoModelForCausalLM
    quiet = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a bar per load is noise in a command's output
    try:
        model = auto.from_pretrained(
            str(path), local_files_only=True, use_safetensors=True, trust_remote_code=False
        )
    finally:
        if quiet:
            hf_logging.enable_progress_bar()
    tokenizer = load_tokenizer(path)
    meta = json.loads((path / META_NAME).read_text()) if (path / META_NAME).is_file() else {}
    block = meta.get("block_size")
    block = block or getattr(config, "max_position_embeddings", None) or config.n_positions
    diffusion_block = meta.get("diffusion_block") if kind == "diffusion" else None
    # folders written before substitution models existed have no corruption: masking
    corruption = meta.get("corruption", "mask") if kind == "diffusion" else "mask"
    if corruption not in CORRUPTIONS:
        raise ValueError(
            f"{path / META_NAME}: corruption must be 'mask' or 'substitution', got {corruption!r}"
        )
    mask_range = tuple(meta.get("mask_range", (0.0, 1.0)))
    model = model.to(device).eval()
    return TextModel(model, tokenizer, kind, int(block), diffusion_block, corruption, mask_range)


def seconds_per_bound_draw(text_model: TextModel, blocks: Any, *, probe: int = 32) -> float:
    """Seconds of one mask draw of the validation bound per block (for the autoregressive
    peer: of its exact NLL per block), timed on the first ``probe`` of ``blocks``
    (``TokenBlocks``): what validating on a wall-clock budget plans with."""
    import time

    from difftext.training import validate

    part = blocks.subset(slice(0, max(1, probe)))
    start = time.perf_counter()
    validate(text_model, part, samples=1)
    return (time.perf_counter() - start) / max(1, len(part))
