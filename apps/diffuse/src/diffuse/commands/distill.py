"""``diffuse distill image|audio``: progressive distillation of a trained model, on the data it
learned from, into students that sample in few network calls (``diffcore.training.distill``).
Each round halves the DDIM steps; its folder samples at its own step count by default."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from diffuse import kit
from diffuse.commands import audio, image

RUN = "run folder: steps_<n>/final/ per round, run.json"
HELP = {
    "distill image": ("distil an image model into few-call students", RUN),
    "distill audio": ("distil a spectrogram model into few-call students", RUN),
}


def register(verbs: dict[str, Any]) -> None:
    add = kit.commands(verbs, HELP)
    for domain, data_options in (("image", image.data_options), ("audio", audio.data_options)):
        parser = add(f"distill {domain}", _distill)
        data_options(parser)
        kit.model_options(parser, help=f"teacher folder (train {domain} --out, or its final/)")
        g = kit.training_options(parser, steps=1000, batch_size=64, lr=5e-4, minutes=False)
        g.add_argument("--calls", type=kit.positive_int, default=4, help="the last student's")
        g.add_argument(
            "--teacher-calls",
            type=kit.positive_int,
            default=32,
            help="DDIM steps of the first teacher: --calls times a power of two (each round "
            "trains --steps optimizer steps)",
        )
        g.add_argument(
            "--label-dropout", type=kit.fraction, default=0.1, help="share without label"
        )


def _distill(args: argparse.Namespace) -> None:
    folder = kit.check_model_dir(args.model, args.domain)  # before importing torch: fast errors
    from diffcore.training import halvings

    try:
        rounds = halvings(args.teacher_calls, args.calls)
    except ValueError:
        raise kit.UsageError(
            f"'{args.teacher_calls}' is not --calls ({args.calls}) times a power of two, "
            f"--teacher-calls, expected e.g. {args.calls * 8}"
        ) from None
    device = kit.resolve_device(args.device)
    config = kit.train_config(args, device=device)
    kit.write_run(args.out, args, train_config=config)
    print(f"{len(rounds)} rounds of {args.steps} steps: {args.teacher_calls} -> {rounds} calls")
    run = {"image": _image, "audio": _audio}[args.domain]
    for path in run(args, folder, config, device):
        print(f"{path}: samples with DDIM in {path.parent.name.removeprefix('steps_')} calls")


def _image(args: argparse.Namespace, folder: Path, config: Any, device: str) -> list[Path]:
    from diffimage import ImagePipeline, distill_model

    data = image.load_data(args)
    teacher = ImagePipeline.from_pretrained(folder, device=device)
    return distill_model(
        teacher.model,
        data,
        config,
        out_dir=args.out,
        steps=args.calls,
        teacher_steps=args.teacher_calls,
        device=device,
        label_dropout=args.label_dropout,
        text_encoder=teacher.text_encoder,
    )


def _audio(args: argparse.Namespace, folder: Path, config: Any, device: str) -> list[Path]:
    from diffaudio import AudioUNet, distill_audio_diffusion
    from diffcore.io import from_pretrained

    teacher = from_pretrained(AudioUNet, folder, device=device)
    _, clips = audio.load(args, teacher.config.spectrogram)
    dropout = {"label_dropout": args.label_dropout, "speaker_dropout": args.label_dropout}
    return distill_audio_diffusion(
        teacher,
        clips,
        args.out,
        config,
        steps=args.calls,
        teacher_steps=args.teacher_calls,
        device=device,
        **dropout,
    )
