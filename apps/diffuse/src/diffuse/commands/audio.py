"""``diffuse train|sample|edit|eval audio``, ``diffuse train|eval vocoder`` and
``diffuse train audio-judge``: spectrogram diffusion for sound (package ``diffaudio``)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffuse.commands._shared import git_revision

FSDD_PATTERN = "{label}_{speaker}_{index}"


def _reported(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad input (a corrupt file, an unknown label...) ends with its message, not a traceback."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (ValueError, FileNotFoundError) as err:
            print(f"diffuse: error: {err}", file=sys.stderr)
            return 2

    return run


def _data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data", required=True, help="folder of wav/flac/ogg/mp3 files or a .parquet file"
    )
    g.add_argument(
        "--pattern",
        default=None,
        help=f"fields in file names, e.g. {FSDD_PATTERN!r} for the Free Spoken Digit Dataset",
    )
    g.add_argument("--label-field", default="label", help="field (or column) naming the class")
    g.add_argument(
        "--speaker-field",
        default="speaker",
        help="field (or column) naming the speaker; 'none' to ignore",
    )
    g.add_argument(
        "--split-field", default=None, help="field that picks held-out clips (FSDD: index)"
    )
    g.add_argument(
        "--held-out", default="0,1,2,3,4", help="values of --split-field held out for testing"
    )
    g.add_argument(
        "--use", choices=("train", "test", "all"), default="train", help="which part to use"
    )
    g.add_argument("--limit", type=int, default=None, help="read at most this many files")
    g.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="bad files: stop, or skip and count",
    )


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sample-rate", type=int, default=8000, help="Hz; audio is resampled to it")
    p.add_argument("--seconds", type=float, default=0.75, help="clip length (pad or crop)")


def _train_args(p: argparse.ArgumentParser, steps: int, batch: int, lr: float) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=steps)
    g.add_argument("--batch-size", type=int, default=batch)
    g.add_argument("--lr", type=float, default=lr)
    g.add_argument(
        "--ema", type=float, default=None, help="EMA decay (default: min(0.999, 1 - 10/steps))"
    )
    g.add_argument("--checkpoint-every", type=int, default=500)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default=None, help="cpu, cuda... (default: cuda if available)")
    g.add_argument("--out", required=True, help="run folder: checkpoints/, final/, run.json")


def _spectrogram(args: argparse.Namespace):
    from diffaudio.spectrogram import spectrogram_config

    return spectrogram_config(args.sample_rate, args.seconds)


def _load(args: argparse.Namespace, spectrogram, **names: Any):
    from diffaudio.data import load_audio

    speaker = None if args.speaker_field == "none" else args.speaker_field
    options: dict[str, Any] = {"on_error": args.on_error}
    if Path(args.data).is_dir():
        options.update(pattern=args.pattern, limit=args.limit, hop=spectrogram.hop_length)
        options.update(label_field=args.label_field, speaker_field=speaker)
    else:
        options.update(label_column=args.label_field, speaker_column=speaker)
    clips = load_audio(
        args.data, sample_rate=spectrogram.sample_rate, num_samples=spectrogram.num_samples,
        **options, **names,
    )  # fmt: skip
    if clips.skipped:
        print(
            f"skipped {len(clips.skipped)} unusable files, e.g. {clips.skipped[0]}", file=sys.stderr
        )
    if args.split_field and args.use != "all":
        test, train = clips.split_by_field(args.split_field, args.held_out.split(","))
        clips = train if args.use == "train" else test
    print(f"{len(clips)} clips of {spectrogram.seconds:.3f} s at {spectrogram.sample_rate} Hz")
    return clips


def _train_config(args: argparse.Namespace):
    from diffcore.training import TrainConfig

    ema = args.ema if args.ema is not None else min(0.999, 1 - 10 / args.steps)
    return TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        ema_decay=ema if ema > 0 else None, checkpoint_every=args.checkpoint_every,
        log_every=max(1, min(50, args.steps // 10)),
    )  # fmt: skip


def _write_run(out: Path, args: argparse.Namespace, **configs: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "command": " ".join(sys.argv),
        "args": {k: v for k, v in vars(args).items() if k != "run"},
        "git_revision": git_revision() or "unknown",
        **{
            k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
            for k, v in configs.items()
        },
    }
    (out / "run.json").write_text(json.dumps(record, indent=2, default=str) + "\n")


def _train_audio(args: argparse.Namespace) -> int:
    from diffaudio.pipeline import train_audio_diffusion

    spectrogram = _spectrogram(args)
    clips = _load(args, spectrogram)
    config = _train_config(args)
    _write_run(Path(args.out), args, train=config, spectrogram=spectrogram)
    result = train_audio_diffusion(
        clips, args.out, config, spectrogram=spectrogram, preset=args.preset,
        label_dropout=args.label_dropout, speaker_dropout=args.label_dropout,
        device=args.device,
    )  # fmt: skip
    print(f"step {result.step}, loss {result.loss:.4f}; model: {result.final_model}")
    return 0


def _train_vocoder(args: argparse.Namespace) -> int:
    from diffaudio.pipeline import train_vocoder
    from diffaudio.vocoder import VocoderConfig

    spectrogram = _spectrogram(args)
    clips = _load(args, spectrogram)
    config = _train_config(args)
    vocoder = VocoderConfig(
        spectrogram, dim=args.dim, intermediate=3 * args.dim, layers=args.layers
    )
    _write_run(Path(args.out), args, train=config, vocoder=vocoder)
    result = train_vocoder(clips, args.out, config, config=vocoder, device=args.device)
    print(f"step {result.step}, loss {result.loss:.4f}; vocoder: {result.final_model}")
    return 0


def _train_judge(args: argparse.Namespace) -> int:
    from diffaudio.judge import train_judge

    spectrogram = _spectrogram(args)
    clips = _load(args, spectrogram)
    config = _train_config(args)
    _write_run(Path(args.out), args, train=config, spectrogram=spectrogram)
    result = train_judge(clips, args.out, config, spectrogram=spectrogram, device=args.device)
    print(f"step {result.step}, loss {result.loss:.4f}; judge: {result.final_model}")
    return 0


def _generator(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)


def _pipeline(args: argparse.Namespace):
    from diffaudio.pipeline import AudioPipeline

    pipe = AudioPipeline.from_pretrained(args.model, args.vocoder)
    pipe.griffin_lim_iters = args.griffin_lim_iters
    return pipe


def _sample_args(p: argparse.ArgumentParser, *, out_required: bool = True) -> None:
    p.add_argument(
        "--model", required=True, help="folder written by `diffuse train audio` (…/final)"
    )
    p.add_argument("--vocoder", default=None, help="vocoder folder (…/final); default: Griffin-Lim")
    p.add_argument("--griffin-lim-iters", type=int, default=32)
    p.add_argument("--steps", type=int, default=25, help="sampler steps")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale")
    p.add_argument(
        "--sampler", default="dpmpp_2m", help="ddpm, ddim, euler, euler_ancestral, heun, dpmpp_2m"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=out_required, help="folder for WAVs, PNGs and samples.jsonl")


def _ids(pipe, labels: str, speakers: str, count: int | None):
    from diffaudio.conditioning import ANY, broadcast_ids, parse_ids

    c = pipe.model.config
    label_ids = parse_ids(
        ",".join(c.label_names) if labels == "all" else labels, c.label_names, "label"
    )
    speaker_ids = parse_ids(speakers, c.speaker_names, "speaker")
    n = count or max(len(label_ids), len(speaker_ids))
    label_t = broadcast_ids(label_ids, n, "label") if c.label_names else None
    speaker_t = broadcast_ids(speaker_ids, n, "speaker") if c.speaker_names else None
    name = lambda ids, names, i: ANY if ids is None or ids[i] == len(names) else names[ids[i]]
    records = [
        {"label": name(label_t, c.label_names, i), "speaker": name(speaker_t, c.speaker_names, i)}
        for i in range(n)
    ]
    return n, label_t, speaker_t, records


def _sample_audio(args: argparse.Namespace) -> int:
    import torch

    from diffaudio.outputs import save_outputs

    pipe = _pipeline(args)
    n, labels, speakers, records = _ids(pipe, args.labels, args.speakers, args.n)
    g = _generator(args.seed)
    specs = []
    for start in range(0, n, args.batch_size):
        part = slice(start, min(n, start + args.batch_size))
        specs.append(
            pipe.sample(
                part.stop - part.start,
                labels=None if labels is None else labels[part],
                speakers=None if speakers is None else speakers[part],
                steps=args.steps,
                guidance_scale=args.guidance,
                sampler=args.sampler,
                generator=g,
                progress=True,
            )  # fmt: skip
        )
    specs = torch.cat(specs)
    waves = pipe.to_waveform(specs)
    names = [f"{i:04d}_{r['label']}_{r['speaker']}" for i, r in enumerate(records)]
    for r in records:
        r.update(seed=args.seed, steps=args.steps, guidance=args.guidance, sampler=args.sampler)
    index = save_outputs(args.out, waves, specs, pipe.spectrogram, names=names, records=records)
    print(f"wrote {n} WAVs and spectrogram PNGs to {args.out} (index: {index})")
    return 0


def _edit_audio(args: argparse.Namespace) -> int:
    from diffaudio.data import fit_length, read_audio
    from diffaudio.outputs import save_outputs
    from diffaudio.pipeline import keep_mask
    from diffaudio.spectrogram import LogMel, load_spectrogram_png

    pipe = _pipeline(args)
    spec_config = pipe.spectrogram
    source = Path(args.input)
    if source.suffix.lower() == ".png":
        x, png_config = load_spectrogram_png(source)
        if png_config != spec_config:
            raise SystemExit(f"{source}: made with {png_config}, the model uses {spec_config}")
    else:
        wave = read_audio(source, spec_config.sample_rate)
        x = LogMel(spec_config)(
            fit_length(wave, spec_config.num_samples, hop=spec_config.hop_length)
        )
    if args.gap:
        start, end = (float(v) for v in args.gap.split(":"))
        keep = keep_mask(spec_config, gap=(start, end))
    else:
        keep = keep_mask(spec_config, keep_until=args.keep_until)
    n, labels, speakers, records = _ids(pipe, args.label, args.speaker, args.n)
    edited = pipe.inpaint(
        x[None, None].expand(n, -1, -1, -1), keep, labels=labels, speakers=speakers,
        steps=args.steps, guidance_scale=args.guidance, sampler=args.sampler,
        generator=_generator(args.seed), progress=True,
    )  # fmt: skip
    waves = pipe.to_waveform(edited)
    names = [f"{source.stem}_edit{i}" for i in range(n)]
    what = {"gap": args.gap} if args.gap else {"keep_until": args.keep_until}
    for r in records:
        r.update(source=str(source), seed=args.seed, **what)
    save_outputs(args.out, waves, edited, spec_config, names=names, records=records)
    print(f"wrote {n} edited versions of {source} to {args.out}")
    return 0


def _eval_audio(args: argparse.Namespace) -> int:
    import torch

    from diffaudio.evaluate import evaluate_samples
    from diffaudio.judge import Judge
    from diffcore.io import from_pretrained

    pipe = _pipeline(args)
    judge = from_pretrained(Judge, args.judge)
    real = _load(args, pipe.spectrogram, label_names=judge.config.label_names)
    c = pipe.model.config
    labels = torch.arange(len(c.label_names)).repeat(args.per_class)
    g = _generator(args.seed)
    specs = torch.cat([
        pipe.sample(labels=part, steps=args.steps, guidance_scale=args.guidance,
                    sampler=args.sampler, generator=g, progress=True)
        for part in labels.split(args.batch_size)
    ])  # fmt: skip
    waves = pipe.to_waveform(specs)
    if args.out:
        from diffaudio.outputs import save_outputs

        names = [f"{i:04d}_{c.label_names[y]}" for i, y in enumerate(labels.tolist())]
        save_outputs(args.out, waves, specs, pipe.spectrogram, names=names)
    # Judge ids follow the judge's names; map the model's label names onto them.
    lookup = {n: i for i, n in enumerate(judge.config.label_names)}
    intended = torch.tensor([lookup[c.label_names[i]] for i in labels.tolist()])
    scores = evaluate_samples(judge, waves, intended, real.waves, real.labels)
    print(json.dumps(scores.to_dict(), indent=2))
    return 0


def _eval_vocoder(args: argparse.Namespace) -> int:
    from diffaudio.evaluate import evaluate_vocoder
    from diffaudio.spectrogram import griffin_lim
    from diffaudio.vocoder import Vocoder
    from diffcore.io import from_pretrained

    if args.vocoder == "griffin-lim":
        spectrogram = _spectrogram(args)
        synthesize = lambda x: griffin_lim(x, spectrogram, n_iter=args.griffin_lim_iters)
    else:
        vocoder = from_pretrained(Vocoder, args.vocoder).eval()
        spectrogram, synthesize = vocoder.config.spectrogram, vocoder
    clips = _load(args, spectrogram)
    print(json.dumps(evaluate_vocoder(synthesize, clips.waves, spectrogram).to_dict(), indent=2))
    return 0


def register(verbs: dict[str, Any]) -> None:
    train = verbs["train"].add_parser("audio", help="train a spectrogram diffusion model")
    _data_args(train)
    _spec_args(train)
    _train_args(train, steps=4000, batch=32, lr=1e-3)
    train.add_argument(
        "--preset", default="small", help="U-Net preset in shared/presets/audio.json"
    )
    train.add_argument(
        "--label-dropout",
        type=float,
        default=0.1,
        help="chance a condition is dropped (for guidance)",
    )
    train.set_defaults(run=_reported(_train_audio))

    vocoder = verbs["train"].add_parser("vocoder", help="train a Vocos-style neural vocoder")
    _data_args(vocoder)
    _spec_args(vocoder)
    _train_args(vocoder, steps=3000, batch=16, lr=2e-3)
    vocoder.add_argument("--dim", type=int, default=192, help="trunk width")
    vocoder.add_argument("--layers", type=int, default=6, help="ConvNeXt blocks")
    vocoder.set_defaults(run=_reported(_train_vocoder))

    judge = verbs["train"].add_parser(
        "audio-judge", help="train the classifier that scores audio samples"
    )
    _data_args(judge)
    _spec_args(judge)
    _train_args(judge, steps=1500, batch=64, lr=3e-3)
    judge.set_defaults(run=_reported(_train_judge))

    sample = verbs["sample"].add_parser("audio", help="generate WAVs and spectrogram PNGs")
    _sample_args(sample)
    sample.add_argument(
        "--labels", default="any", help="class names, comma-separated, 'all' or 'any'"
    )
    sample.add_argument(
        "--speakers", default="any", help="speaker names, comma-separated, or 'any'"
    )
    sample.add_argument(
        "--n", type=int, default=None, help="samples (default: one per label/speaker)"
    )
    sample.add_argument("--batch-size", type=int, default=50)
    sample.set_defaults(run=_reported(_sample_audio))

    edit = verbs["edit"].add_parser("audio", help="fill a gap in a recording or continue it")
    _sample_args(edit)
    edit.add_argument(
        "--input", required=True, help="a recording, or a spectrogram PNG from diffaudio"
    )
    where = edit.add_mutually_exclusive_group(required=True)
    where.add_argument("--gap", help="START:END seconds to regenerate")
    where.add_argument("--keep-until", type=float, help="keep the first SECONDS, generate the rest")
    edit.add_argument("--label", default="any", help="class of the result, or 'any'")
    edit.add_argument("--speaker", default="any", help="speaker of the result, or 'any'")
    edit.add_argument("--n", type=int, default=1, help="versions to make")
    edit.set_defaults(run=_reported(_edit_audio))

    evaluate = verbs["eval"].add_parser(
        "audio", help="judge accuracy and Fréchet distance of samples"
    )
    _sample_args(evaluate, out_required=False)
    _data_args(evaluate)
    evaluate.add_argument(
        "--judge", required=True, help="folder written by `diffuse train audio-judge`"
    )
    evaluate.add_argument("--per-class", type=int, default=10, help="samples per class")
    evaluate.add_argument("--batch-size", type=int, default=50)
    evaluate.set_defaults(run=_reported(_eval_audio), use="test")

    voc_eval = verbs["eval"].add_parser("vocoder", help="vocoder distance to real audio and speed")
    _data_args(voc_eval)
    _spec_args(voc_eval)
    voc_eval.add_argument("--vocoder", required=True, help="vocoder folder, or 'griffin-lim'")
    voc_eval.add_argument("--griffin-lim-iters", type=int, default=32)
    voc_eval.set_defaults(run=_reported(_eval_vocoder))
