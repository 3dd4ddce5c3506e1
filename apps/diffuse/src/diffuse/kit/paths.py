"""Checks of the folders and files a command is given, before anything heavy is loaded: a
missing path, a data folder where a model was expected, or another domain's model each end in
one line saying what the path is and what was expected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diffcore.io import hub_name, missing_source
from diffuse.kit.errors import DataError

# Saved models by the class recorded in config.json ("_class", written by diffcore.io), with
# what a person calls them. Text models are transformers folders (no "_class"), of a kind.
KINDS = {
    "diffimage.model.ImageDiffusion": ("image", "an image model"),
    "diffimage.evaluate.Judge": ("image", "an image judge"),
    "diffaudio.model.AudioUNet": ("audio", "an audio model"),
    "diffaudio.judge.Judge": ("audio", "an audio judge"),
    "diffaudio.vocoder.Vocoder": ("audio", "an audio vocoder"),
    "diffprotein.model.ProteinDenoiser": ("protein", "a protein model"),
    "diffprotein.judges.ProteinLM": ("protein", "a protein language model"),
    "diffprotein.judges.FamilyClassifier": ("protein", "a protein family classifier"),
    "text.diffusion": ("text", "a text diffusion model"),
    "text.autoregressive": ("text", "an autoregressive text model"),
}
# The model each (domain, option) expects: --model is what the domain samples from.
MODELS = {
    ("image", "--model"): "diffimage.model.ImageDiffusion",
    ("image", "--judge"): "diffimage.evaluate.Judge",
    ("image", "--experts"): "diffimage.model.ImageDiffusion",
    ("image", "--stages"): "diffimage.model.ImageDiffusion",
    ("image", "--init"): "diffimage.model.ImageDiffusion",
    ("audio", "--experts"): "diffaudio.model.AudioUNet",
    ("audio", "--stages"): "diffaudio.model.AudioUNet",
    ("audio", "--init"): "diffaudio.model.AudioUNet",
    ("audio", "--model"): "diffaudio.model.AudioUNet",
    ("audio", "--judge"): "diffaudio.judge.Judge",
    ("audio", "--vocoder"): "diffaudio.vocoder.Vocoder",
    ("protein", "--model"): "diffprotein.model.ProteinDenoiser",
    ("protein", "--judge"): "diffprotein.judges.ProteinLM",
    ("protein", "--classifier"): "diffprotein.judges.FamilyClassifier",
    ("text", "--model"): ("text.diffusion", "text.autoregressive"),  # both sample
    ("text", "--judge"): "text.autoregressive",
    ("text", "--experts"): "text.diffusion",
    ("protein", "--experts"): "diffprotein.model.ProteinDenoiser",
}
# A run folder (a training command's --out) holds its model here.
RUN_SUBFOLDER = {"image": "final", "audio": "final", "protein": "final", "text": "model"}
DATA_SUFFIXES = {  # what a data folder holds
    *(".png", ".jpg", ".jpeg", ".parquet", ".csv", ".jsonl", ".txt"),
    *(".wav", ".flac", ".mp3", ".ogg", ".fasta", ".fa", ".a2m", ".a3m", ".sto"),
}


def _kind_of(config: dict, folder: Path) -> str:
    """The key of KINDS for the parsed config.json of ``folder``."""
    cls = config.get("_class")
    if isinstance(cls, str):
        return cls
    if "architectures" in config or "model_type" in config:  # transformers: difftext's kinds
        kind = _text_kind(folder / "difftext.json")
        names = config.get("architectures")
        names = names if isinstance(names, list) else []  # a damaged file's other shapes
        causal = any(str(a).endswith("ForCausalLM") for a in names)
        return f"text.{kind or ('autoregressive' if causal else 'diffusion')}"
    # saved before "_class" existed: each domain's config has its own keys
    for key, domain in (("image_size", "image"), ("spectrogram", "audio"), ("families", "protein")):
        if key in config:
            return MODELS[domain, "--model"]
    return "unknown"


def _text_kind(meta: Path) -> str | None:
    """The "kind" difftext.json records, or None without one; DataError naming a damaged file."""
    if not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{meta} is not valid JSON ({err})") from None
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind is not None and kind not in ("diffusion", "autoregressive"):
        raise DataError(f"{meta} names the kind {kind!r}; expected diffusion or autoregressive")
    return kind


def _describe(kind: str) -> str:
    if kind in KINDS:
        return KINDS[kind][1]
    return f"a {kind.rsplit('.', 1)[-1]}" if kind != "unknown" else "an unknown model"


def _expected(kinds: tuple[str, ...]) -> str:
    if kinds[0].startswith("text."):
        what = "a text" if len(kinds) > 1 else _describe(kinds[0])
        return f"{what} model folder (a transformers config.json)"
    return f"{_describe(kinds[0])} folder (config.json of {kinds[0].rsplit('.', 1)[-1]})"


def check_model_dir(path: str | Path, domain: str, *, option: str = "--model") -> Path:
    """The model folder ``path`` names (itself, or the model folder inside a training run's
    folder) when it holds the model that ``option`` of ``domain``'s commands expects (MODELS);
    else DataError: "<path> is <what it is>, <option>, expected <that model> folder"."""
    expected = MODELS[domain, option]
    expected = (expected,) if isinstance(expected, str) else expected
    want = _expected(expected)
    folder = Path(path)
    if not folder.exists():
        raise DataError(f"{folder} does not exist, {option}, expected {want}")
    if not folder.is_dir():
        raise DataError(f"{folder} is a file, {option}, expected {want}")
    if not (folder / "config.json").is_file():  # a run folder: its model is in a subfolder
        inner = [RUN_SUBFOLDER[domain], *sorted(set(RUN_SUBFOLDER.values()))]
        folder = next((folder / x for x in inner if (folder / x / "config.json").is_file()), folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        files = [p for p in folder.iterdir() if p.is_file()]
        if any(p.suffix == ".safetensors" for p in files):
            what = f"{folder} has weights but no config.json"
        elif any(p.suffix.lower() in DATA_SUFFIXES for p in files) or any(
            p.is_dir() for p in folder.iterdir()
        ):
            what = f"{folder} is not a model folder (no config.json; a data folder?)"
        else:
            what = f"{folder} is not a model folder (no config.json)"
        raise DataError(f"{what}, {option}, expected {want}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(
            f"{config_file} is not valid JSON ({err}), {option}, expected {want}"
        ) from None
    if not isinstance(config, dict):
        raise DataError(f"{config_file} holds no JSON object, {option}, expected {want}")
    kind = _kind_of(config, folder)
    if kind not in expected:
        raise DataError(f"{path} is {_describe(kind)} folder, {option}, expected {want}")
    return folder


def check_input(path: Any, option: str, expected: str, *, hub: bool = False) -> Any:
    """``path`` (or each of a list of paths) when it exists (or, with ``hub``, when it is
    ``hub:NAME``, a Hugging Face data set); else DataError naming ``option`` and what was
    ``expected``. A bare name is never sent to the Hub: a mistyped path fails here, at once."""
    if isinstance(path, list | tuple):
        return [check_input(p, option, expected, hub=hub) for p in path]
    text = str(path)
    if Path(text).exists() or (hub and hub_name(text) is not None):
        return text
    problem = missing_source(text) if hub else f"{text} does not exist"
    raise DataError(f"{problem}, {option}, expected {expected}")


def loading(args: Any, domain: str) -> dict[str, Any]:
    """The keyword arguments of a continuous pipeline's ``from_pretrained`` that a command's
    model options give: the device, and the --experts folders (checked), if any."""
    from diffuse.kit.record import resolve_device

    experts = [e for e in (getattr(args, "experts", None) or "").split(",") if e]
    folders = [check_model_dir(e, domain, option="--experts") for e in experts]
    return {"device": resolve_device(args.device)} | ({"experts": folders} if folders else {})


PIPELINES = {  # each domain's pipeline class, imported only when a command opens a model
    "image": "diffimage:ImagePipeline",
    "audio": "diffaudio.pipeline:AudioPipeline",
    "text": "difftext.pipeline:TextPipeline",
    "protein": "diffprotein.pipeline:ProteinPipeline",
}


def open_pipeline(args: Any, domain: str, **options: Any) -> Any:
    """The ``domain`` pipeline of --model (checked before torch is imported), on --device, with
    --experts where the command has them; ``options`` go to its ``from_pretrained``."""
    import importlib

    folder = check_model_dir(args.model, domain)
    stages = [e for e in (getattr(args, "stages", None) or "").split(",") if e]
    stages = [check_model_dir(s, domain, option="--stages") for s in stages]
    module, name = PIPELINES[domain].split(":")
    pipeline = getattr(importlib.import_module(module), name)
    base = pipeline.from_pretrained(folder, **(loading(args, domain) | options))
    if not stages:
        return base
    from diffcore.generation import CascadePipeline

    # the stages load as the base did (device, vocoder...): the cascade is the last one's
    on = options | {"device": base.device}
    return CascadePipeline(base, [pipeline.from_pretrained(s, **on) for s in stages])


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path``, making its folder first (a report a command was asked for)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
