"""Conditioning: class labels with a null label, and captions through a ``transformers`` text
encoder loaded from a local folder.

Classifier-free guidance (Ho & Salimans 2022, https://arxiv.org/abs/2207.12598) trains one network
both conditionally and unconditionally by dropping the condition at random: a label becomes the
U-Net's null label, a caption embedding becomes the zero vector. Sampling uses the same nulls for
the unconditional branch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from diffimage.data import ImageData


def null_labels(n: int, null_label: int, device: torch.device | str = "cpu") -> Tensor:
    return torch.full((n,), null_label, dtype=torch.long, device=device)


def parse_labels(spec: str | Sequence[int | str], n: int, class_names: Sequence[str]) -> Tensor:
    """Labels for ``n`` samples from "all" (cycle through every class), one class (id or name),
    or a list of ids / names (cycled to length n). Returns (n,) long."""
    if isinstance(spec, str):
        spec = list(range(len(class_names))) if spec == "all" else spec.split(",")
    ids = []
    for item in spec:
        text = str(item).strip()
        if text.lstrip("-").isdigit():
            ids.append(int(text))
        elif text in class_names:
            ids.append(list(class_names).index(text))
        else:
            raise ValueError(
                f"unknown class {text!r}; expected an id or one of {list(class_names)}"
            )
    if not ids:
        raise ValueError("no labels given")
    limit = len(class_names)
    bad = [i for i in ids if i < 0 or (limit and i >= limit)]
    if bad:
        raise ValueError(f"class ids {bad} out of range; the model has {limit} classes")
    return torch.tensor([ids[i % len(ids)] for i in range(n)], dtype=torch.long)


class TextEncoder:
    """A frozen ``transformers`` encoder (BERT, CLIP text, T5 encoder...) from a local folder that
    holds its config, weights and tokenizer; captions become mean-pooled last hidden states.

    encode(captions) -> (B, dim) float32. Nothing is fetched from a hub: ``local_files_only``.
    """

    def __init__(
        self, directory: str | Path, *, device: str | torch.device = "cpu", max_length: int = 77
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.directory = Path(directory)
        if not (self.directory / "config.json").is_file():
            raise FileNotFoundError(
                f"{self.directory} is not a saved transformers model (no config.json); save one "
                "with model.save_pretrained(dir) and tokenizer.save_pretrained(dir)"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(self.directory, local_files_only=True)
        self._loaded = AutoModel.from_pretrained(self.directory, local_files_only=True)
        # Encoder-decoder models (T5) keep only their encoder.
        model = self._loaded
        self.model = (model.get_encoder() if model.config.is_encoder_decoder else model).eval()
        self.model.requires_grad_(False)
        self.model.to(device)
        self.device = torch.device(device)
        self.max_length = max_length

    def save(self, directory: str | Path) -> Path:
        """Write the encoder and its tokenizer (safetensors) into ``directory``."""
        directory = Path(directory)
        self._loaded.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)
        return directory

    @property
    def dim(self) -> int:
        config = self.model.config
        return int(getattr(config, "hidden_size", None) or config.d_model)

    @torch.no_grad()
    def encode(self, captions: Sequence[str]) -> Tensor:
        """captions: B strings -> (B, dim) mean of the last hidden states over real tokens."""
        if isinstance(captions, str):
            raise TypeError("encode expects a list of captions, got one string")
        tokens = self.tokenizer(
            list(captions),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        hidden = self.model(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        ).last_hidden_state
        weights = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * weights).sum(1) / weights.sum(1).clamp(min=1)).float().cpu()


def attach_captions(data: ImageData, encoder: TextEncoder, *, batch_size: int = 256) -> ImageData:
    """Embed ``data.captions`` once (the encoder is frozen) into ``data.context``: (N, dim)."""
    if data.captions is None:
        raise ValueError("the data set has no captions; load it with caption_column=...")
    chunks = [
        encoder.encode(data.captions[i : i + batch_size])
        for i in range(0, len(data.captions), batch_size)
    ]
    data.context = torch.cat(chunks)
    return data


def grid_labels(
    num_classes: int | None, rows: int, *, columns: int = 16
) -> tuple[int, Tensor | None]:
    """A preview grid of ``rows`` rows: its number of columns (one per class, at most
    ``columns``; 8 for an unconditional model) and the labels of its images in row order
    (None for an unconditional model)."""
    if not num_classes:
        return 8, None
    width = min(num_classes, columns)
    return width, torch.arange(rows * width) % width


def parse_conditions(
    model: object, n: int, *, labels: str | None = None, captions: str | None = None
) -> dict[str, object]:
    """The conditions of ``n`` samples of ``model`` (an ``ImageDiffusion``) from a person's
    text: ``labels`` "all" (every class in turn; the default for a class-conditional model),
    "none" (unconditional), or class ids or names, comma-separated; ``captions`` separated by
    "|", cycled over the samples."""
    conditions: dict[str, object] = {}
    if model.num_classes is not None and labels in (None, "all"):
        conditions["labels"] = torch.arange(n) % model.num_classes  # names or not
    elif model.num_classes is not None and labels != "none":
        conditions["labels"] = parse_labels(labels, n, model.config.class_names)
    if captions:
        parts = captions.split("|")
        conditions["captions"] = [parts[i % len(parts)] for i in range(n)]
    return conditions


def caption_encoder(data: ImageData, directory: str | Path, *, device: str = "cpu") -> TextEncoder:
    """The caption encoder of ``directory`` (a local transformers folder), with the embeddings
    of ``data``'s captions attached to ``data`` for training."""
    encoder = TextEncoder(directory, device=device)
    attach_captions(data, encoder)
    return encoder
