"""``diffuse train image-level|audio-level|text-level|protein-level``: a refiner's level predictor, which reads
how corrupted each input looks so that ``diffuse refine`` needs no --strength. It learns the
refiner's own process (noise or a crappification; for tokens, ones replaced at random) on clean
data, and is copied into the model folder's ``level/``."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from diffuse import kit
from diffuse.commands import audio, image

OUT = "run folder; the predictor is also copied into the model's level/"
HELP = {
    f"train {d}-level": (
        f"train a model's level predictor (for `refine {d}` without --strength)",
        OUT,
    )
    for d in ("image", "audio", "text", "protein")
}
TEXT = "text files (.txt/.md), folders of them, or .parquet/.jsonl/.csv tables"
PROTEINS = "sequence files (FASTA, A3M, Stockholm) or folders of them"


def register(verbs: dict[str, Any]) -> None:
    add = kit.commands(verbs, HELP)
    for domain, batch in (("image", 128), ("audio", 64), ("text", 32), ("protein", 64)):
        level = add(f"train {domain}-level", _train_level)
        kit.model_options(level, help="the refiner's model folder (its process is learned)")
        if domain == "image":
            image.data_options(level)
        elif domain == "audio":
            audio.data_options(level)
        else:
            kit.data_options(level, help=TEXT if domain == "text" else PROTEINS)
        options = {"steps": 500, "batch_size": batch, "lr": 2e-3, "ema": False, "minutes": False}
        kit.training_options(level, **options)


def _train_level(args: argparse.Namespace) -> None:
    domain = args.domain.removesuffix("-level")
    folder = kit.check_model_dir(args.model, domain)
    from diffcore.generation.refine import LEVEL_DIR

    device, out = kit.resolve_device(args.device), Path(args.out)
    config = kit.train_config(args, device=device)
    model, data = _model_and_data(domain, folder, args, device)
    module = __import__(f"diff{domain}.refine", fromlist=["train_level_predictor"])
    kit.write_run(out, args, train_config=config)
    result = module.train_level_predictor(model, data, config, out_dir=out, device=device)
    target = folder / LEVEL_DIR
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(result.final_model, target)
    print(f"level predictor: {result.final_model} (copied to {target})")


def _model_and_data(domain: str, folder: Path, args: argparse.Namespace, device: Any) -> tuple:
    """The refiner of ``folder`` and the clean data its predictor learns from."""
    if domain == "image":
        from diffimage import ImagePipeline

        return ImagePipeline.from_pretrained(folder, device=device).model, image.load_data(args)
    if domain == "audio":
        from diffaudio.model import AudioUNet
        from diffcore.io import from_pretrained

        model = from_pretrained(AudioUNet, folder, device=device)
        return model, audio.load(args, model.config.spectrogram)[1]
    if domain == "protein":
        kit.check_input(args.data, "--data", PROTEINS)
        from diffcore.io import from_pretrained
        from diffprotein.data import ReadOptions, read_sequences
        from diffprotein.model import ProteinDenoiser

        model = from_pretrained(ProteinDenoiser, folder, device=device)
        return model, read_sequences([args.data], ReadOptions()).records
    kit.check_input(args.data, "--data", TEXT)
    from difftext.data import load_documents, make_blocks
    from difftext.model import load_text_model

    model = load_text_model(folder, device=device)
    return model, make_blocks(model.tokenizer, load_documents([args.data]), model.block_size)
