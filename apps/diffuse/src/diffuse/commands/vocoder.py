"""``diffuse train|eval vocoder``: the neural vocoder that voices diffaudio's spectrograms (data
options and loading as in ``diffuse.commands.audio``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from diffuse import kit
from diffuse.commands.audio import data_options, load


def register(verbs: dict[str, Any]) -> None:
    train = kit.add_command(
        verbs,
        "train vocoder",
        _train,
        "train a Vocos-style neural vocoder",
        "run folder: final/, checkpoints/, run.json",
    )
    data_options(train)
    g = kit.training_options(train, steps=3000, batch_size=16, lr=2e-3, minutes=False)
    g.add_argument("--dim", type=kit.positive_int, default=192, help="trunk width")
    g.add_argument("--layers", type=kit.positive_int, default=6, help="ConvNeXt blocks")
    evaluate = kit.add_command(
        verbs, "eval vocoder", _eval, "a vocoder's distance to real audio, and its speed"
    )
    data_options(evaluate, use="test")
    g = kit.model_options(evaluate, option="--vocoder", help="vocoder folder, or griffin-lim")
    g.add_argument("--griffin-lim-iters", type=kit.positive_int, default=32, help="iterations")


def _train(args: argparse.Namespace) -> None:
    spectrogram, clips = load(args)
    from diffaudio.pipeline import train_vocoder
    from diffaudio.vocoder import VocoderConfig

    shape = {"dim": args.dim, "intermediate": 3 * args.dim, "layers": args.layers}
    device = kit.resolve_device(args.device)
    vocoder, config = VocoderConfig(spectrogram, **shape), kit.train_config(args, device=device)
    kit.write_run(args.out, args, train_config=config, vocoder_config=vocoder)
    result = train_vocoder(clips, args.out, config, config=vocoder, device=device)
    kit.print_result(result)


def _eval(args: argparse.Namespace) -> None:
    voc = args.vocoder if args.vocoder == "griffin-lim" else None
    voc = voc or kit.check_model_dir(args.vocoder, "audio", option="--vocoder")
    from diffaudio.evaluate import evaluate_vocoder
    from diffaudio.spectrogram import griffin_lim
    from diffaudio.vocoder import Vocoder
    from diffcore.io import from_pretrained

    vocoder = None if voc == "griffin-lim" else from_pretrained(Vocoder, voc).eval()
    spectrogram, clips = load(args, vocoder and vocoder.config.spectrogram)
    synthesize = vocoder or (lambda x: griffin_lim(x, spectrogram, n_iter=args.griffin_lim_iters))
    print(json.dumps(evaluate_vocoder(synthesize, clips.waves, spectrogram).to_dict(), indent=2))
