"""``diffuse refine image|audio|text``: refiners, boosting's next round. Any model refines what
was made anywhere by running the last part of its own process on it, from one --strength or from
the level the model's level predictor reads on each input (``diffuse train <domain>-level``,
``commands/levels.py``; proteins: ``edit protein --fraction``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diffuse import kit
from diffuse.commands import audio, image, protein, text

SHARE = (
    "share of each one's {} redrawn (default: each one's level, read by the model's level "
    "predictor: train {}-level)"
)
HELP = {
    "refine image": (
        "refine images from anywhere with a model: edit from each one's own level",
        "folder for refined/, grid.png and refine.jsonl",
    ),
    "refine audio": (
        "refine recordings from anywhere with a model: edit each from one --strength",
        "folder for the refined WAVs and spectrogram PNGs",
    ),
    "refine protein": (
        "refine sequences from anywhere with a model: re-noise a share of each and redraw it",
        "FASTA of the refined sequences (with run.json beside it)",
    ),
    "refine text": (
        "refine texts from anywhere with a model: re-noise a share of each and redraw it",
        "JSONL of the refined texts (with run.json beside it)",
    ),
}


def register(verbs: dict[str, Any]) -> None:
    add = kit.commands(verbs, HELP)
    refine = add("refine image", _refine)
    image._model_options(refine)
    g = kit.group(refine, "data")
    g.add_argument("--input", nargs="+", required=True, help="image files or folders")
    g.add_argument(
        "--strength",
        type=kit.share,
        help="share of steps run for every image (default: each image's level, read by the "
        "model's level predictor: train image-level)",
    )
    refine_audio = add("refine audio", _refine_audio)
    audio._model_options(refine_audio, conditions=False)
    g = kit.group(refine_audio, "data")
    g.add_argument("--input", nargs="+", required=True, help="WAV files or folders of them")
    g.add_argument(
        "--strength",
        type=kit.share,
        help="share of the steps run on each recording (default: each one's level, read by the "
        "model's level predictor: train audio-level)",
    )
    refine_protein = add("refine protein", _refine_protein, out_default="refined.fasta")
    protein._model_options(refine_protein)
    g = kit.group(refine_protein, "data")
    g.add_argument("--input", required=True, help="sequences: FASTA, A3M or Stockholm")
    g.add_argument("--strength", type=kit.share, help=SHARE.format("residues", "protein"))
    refine_text = add("refine text", _refine_text, out_default="refined.jsonl")
    text._model_options(refine_text, n=1)
    g = kit.group(refine_text, "data")
    g.add_argument("--input", required=True, help="texts: one per line, or .jsonl with `text`")
    g.add_argument("--strength", type=kit.share, help=SHARE.format("tokens", "text"))


def _refine_protein(args: argparse.Namespace) -> None:
    source = kit.check_input(args.input, "--input", "a sequence file")
    pipe = kit.open_pipeline(args, "protein")
    from diffprotein.data import ReadOptions, read_sequences
    from diffprotein.refine import refine_records

    records = read_sequences(source, ReadOptions()).records
    predictor = _predictor(args, "protein", pipe.device)
    options = {"strength": args.strength, "predictor": predictor, "family": args.family}
    refined, strengths = refine_records(pipe, records, **options, **kit.sampling(args))
    protein._save(pipe, refined, args)
    print(f"strengths: {', '.join(f'{s:.2f}' for s in strengths.tolist())}", file=sys.stderr)


def _predictor(args: argparse.Namespace, domain: str, device: Any) -> Any:
    """The level predictor of --model (None with --strength); a one-line error if it has none."""
    if args.strength is not None:
        return None
    from diffcore.generation.refine import LEVEL_DIR

    folder = kit.check_model_dir(args.model, domain)
    if not (folder / LEVEL_DIR).is_dir():
        raise kit.UsageError(
            f"no level predictor in {folder / LEVEL_DIR}, --strength, expected a strength or "
            f"`diffuse train {domain}-level --model {args.model}` first"
        )
    module = __import__(f"diff{domain}.refine", fromlist=["load_level_predictor"])
    return module.load_level_predictor(folder, device=device)


def _refine(args: argparse.Namespace) -> None:
    kit.check_input(args.input, "--input", "image files or folders")
    pipe = kit.open_pipeline(args, "image", compile=args.compile)
    from diffimage import load_image_files
    from diffimage.images import save_sample_files
    from diffimage.refine import refine

    predictor = _predictor(args, "image", pipe.device)
    size = pipe.model.config.image_size
    images, files = load_image_files(args.input, channels=pipe.model.channels, size=size)
    options = image._sampling(pipe, args, len(images))
    refined, strengths = refine(
        pipe, images, strength=args.strength, predictor=predictor, **options
    )
    kit.write_run(args.out, args)
    out = Path(args.out)
    grid = {"folder": "refined", "grid": (images, refined), "columns": len(images)}
    written = save_sample_files(refined, out, [f.stem for f in files], **grid)
    with (out / "refine.jsonl").open("w") as index:
        for file, strength in zip(files, strengths.tolist(), strict=True):
            index.write(json.dumps({"input": str(file), "strength": round(strength, 4)}) + "\n")
    print("{} and {}".format(*written))
    print(f"strengths: {', '.join(f'{s:.2f}' for s in strengths.tolist())}")


def _refine_audio(args: argparse.Namespace) -> None:
    kit.check_input(args.input, "--input", "WAV files or folders")
    from diffcore.io import find_files

    try:
        files = find_files(args.input, (".wav",), what="WAV")
    except ValueError:
        raise kit.DataError(
            f"no .wav file in {' '.join(args.input)}, --input, expected WAVs"
        ) from None
    pipe = audio._open(args)
    import torch

    from diffaudio.spectrogram import load_spectrogram
    from diffcore.generation import refine

    clips = torch.stack([load_spectrogram(f, pipe.spectrogram) for f in files])[:, None]
    predictor = _predictor(args, "audio", pipe.device)
    options = {"strength": args.strength, "predictor": predictor} | kit.sampling(args, pipe)
    refined, strengths = refine(pipe, clips, **options)  # without a class
    records = [
        {"input": str(f), "strength": round(s, 4)}
        for f, s in zip(files, strengths.tolist(), strict=True)
    ]
    audio._save(args, pipe, refined, [f"{f.stem}_refined" for f in files], records)


def _refine_text(args: argparse.Namespace) -> None:
    source = kit.check_input(args.input, "--input", "a text or JSONL file")
    pipe = kit.open_pipeline(args, "text")
    from difftext.data import read_texts
    from difftext.refine import refine_texts

    texts = [t for t in read_texts(source) for _ in range(args.n)]
    predictor = _predictor(args, "text", pipe.device)
    options = {"strength": args.strength, "predictor": predictor} | kit.sampling(args, pipe)
    refined, strengths = refine_texts(pipe, texts, **options)
    text._save(refined, [""] * len(refined), args, pipe)
    print(f"strengths: {', '.join(f'{s:.2f}' for s in strengths.tolist())}", file=sys.stderr)
