"""``diffuse train|sample|edit|eval audio`` and ``train audio-judge``: spectrogram diffusion for
sound (diffaudio). The vocoder's commands: ``diffuse.commands.vocoder``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diffuse import kit

DATA = "a folder of wav/flac/ogg/mp3 files, or a .parquet file"
FSDD = "{label}_{speaker}_{index}"  # the Free Spoken Digit Dataset's file names
RUN = "run folder: final/, checkpoints/, run.json"
HELP = {  # command: (its line in `diffuse <verb> --help`, --out)
    "train audio": ("train a spectrogram diffusion model", RUN),
    "train audio-judge": ("train the classifier `eval audio` scores with", RUN),
    "sample audio": ("generate WAVs and spectrogram PNGs", "folder for them and samples.jsonl"),
    "edit audio": ("fill a gap in a recording, or continue it", "folder for the edited files"),
    "eval audio": ("judge accuracy and Fréchet distance of samples", "folder for the samples"),
}
TRAINERS = {"audio": (4000, 32, 1e-3), "audio-judge": (1500, 64, 3e-3)}
# diffaudio.model.CRAPPIFIERS (a test keeps them equal), here so --help imports no torch
CRAPPIFIERS = ("blur", "lowpass", "freq_mask", "time_mask", "downsample", "noise")
WAV_FORMATS = ("pcm16", "float")  # diffaudio.outputs.WAV_FORMATS, without importing torch here


def register(verbs: dict[str, Any]) -> None:
    add = kit.commands(verbs, HELP)
    g = {}  # the training options of each trainer
    for name, (steps, batch, lr) in TRAINERS.items():
        train = add(f"train {name}", _train)
        data_options(train)
        audio = name == "audio"
        options = {"steps": steps, "batch_size": batch, "lr": lr, "crappifiers": CRAPPIFIERS}
        g[name] = kit.training_options(train, minutes=audio, process=audio, **options)
    g["audio"].add_argument("--preset", default="small", help="preset in shared/presets/audio.json")
    g["audio"].add_argument("--label-dropout", type=kit.fraction, default=0.1, help="unlabelled")
    sample = add("sample audio", _sample)
    _model_options(sample, batch_size=50)
    kit.count_option(sample, default=None, help="samples (default: one per label or speaker)")
    edit = add("edit audio", _edit)
    _model_options(edit)
    g = kit.group(edit, "data")
    g.add_argument("--input", required=True, help="a recording, or a spectrogram PNG of diffaudio")
    where = g.add_mutually_exclusive_group(required=True)
    where.add_argument("--gap", type=kit.interval, help="START:END seconds to regenerate")
    where.add_argument("--keep-until", type=kit.positive_float, help="seconds to keep")
    kit.count_option(edit, default=1, help="versions to make")
    evaluate = add("eval audio", _eval, out_required=False)
    _model_options(evaluate, batch_size=50, conditions=False)
    kit.model_options(evaluate, option="--judge", help="judge folder (train audio-judge --out)")
    g = kit.group(evaluate, "sampling")
    g.add_argument("--per-class", type=kit.positive_int, default=10, help="samples per class")
    data_options(evaluate, use="test")


def data_options(parser: argparse.ArgumentParser, use: str = "train") -> None:
    g = kit.data_options(parser, help=DATA)
    g.add_argument("--pattern", help=f"fields in file names, e.g. {FSDD!r} (FSDD)")
    g.add_argument("--label-field", default="label", help="field (or column) naming the class")
    g.add_argument("--speaker-field", default="speaker", help="field naming the speaker; none")
    g.add_argument("--split-field", help="field that picks held-out clips (FSDD: index)")
    g.add_argument("--held-out", default="0,1,2,3,4", help="values of --split-field held out")
    g.add_argument("--use", choices=("train", "test", "all"), default=use, help="which clips")
    g.add_argument("--limit", type=kit.positive_int, help="read at most this many files")
    g.add_argument("--on-error", choices=("raise", "skip"), default="raise", help="bad files")
    g.add_argument("--sample-rate", type=kit.positive_int, default=8000, help="Hz (resampled)")
    g.add_argument("--seconds", type=kit.positive_float, default=0.75, help="clip length")


def _model_options(parser: Any, batch_size: int | None = None, conditions: bool = True) -> None:
    g = kit.model_options(parser, help="model folder (train audio --out or final/)", experts=True)
    g.add_argument("--vocoder", help="vocoder folder (train vocoder --out); default: Griffin-Lim")
    g.add_argument("--griffin-lim-iters", type=kit.positive_int, default=32, help="iterations")
    g = kit.sampling_options(
        parser, "continuous", "dpmpp_2m", steps=25, guidance=3.0, batch_size=batch_size
    )
    g.add_argument("--wav-format", choices=WAV_FORMATS, default="pcm16", help="WAV samples")
    if conditions:
        g.add_argument("--labels", "--label", default="any", help="class names, all, or any")
        g.add_argument("--speakers", "--speaker", default="any", help="speaker names, or any")


def load(args: argparse.Namespace, spectrogram: Any = None, **names: Any) -> tuple:
    """(the spectrogram settings, the clips of --data)."""
    kit.check_input(args.data, "--data", DATA)
    from diffaudio.data import load_split
    from diffaudio.spectrogram import spectrogram_config

    spectrogram = spectrogram or spectrogram_config(args.sample_rate, args.seconds)
    fields = ("pattern", "label_field", "split_field", "use", "limit", "on_error")
    names |= {k: getattr(args, k) for k in fields} | {"held_out": args.held_out.split(",")}
    speaker = None if args.speaker_field == "none" else args.speaker_field
    clips = load_split(args.data, spectrogram, speaker_field=speaker, **names)
    if clips.skipped:
        print(f"skipped {len(clips.skipped)} files, e.g. {clips.skipped[0]}", file=sys.stderr)
    print(f"{len(clips)} clips of {spectrogram.seconds:.3f} s at {spectrogram.sample_rate} Hz")
    return spectrogram, clips


def _train(args: argparse.Namespace) -> None:
    budget = kit.Budget(getattr(args, "minutes", None), grad_accum=args.grad_accum)
    spectrogram, clips = load(args)
    from diffaudio.judge import train_judge
    from diffaudio.model import seconds_per_step
    from diffaudio.pipeline import train_audio_diffusion

    device, steps, stop_at = kit.resolve_device(args.device), args.steps, None
    if budget:  # (saving the model is all that follows training)
        timing = {"preset": args.preset, "precision": args.precision, "device": device}
        step = seconds_per_step(clips, spectrogram, args.batch_size, **timing)
        steps, stop_at = budget.plan(step, after=kit.SAVE_SECONDS)
    config = kit.train_config(args, device=device, steps=steps, deadline=stop_at)
    kit.write_run(args.out, args, train_config=config, spectrogram=spectrogram)
    if args.domain == "audio":
        dropout = {"label_dropout": args.label_dropout, "speaker_dropout": args.label_dropout}
        options = {"spectrogram": spectrogram, "preset": args.preset} | dropout
        options |= kit.process_options(args) | kit.init_option(args, "audio")
        result = train_audio_diffusion(clips, args.out, config, device=device, **options)
    else:
        result = train_judge(clips, args.out, config, spectrogram=spectrogram, device=device)
    kit.print_result(result)


def _open(args: argparse.Namespace) -> Any:
    """The pipeline of --model and --vocoder, checked before torch is imported."""
    voc = args.vocoder and kit.check_model_dir(args.vocoder, "audio", option="--vocoder")
    return kit.open_pipeline(args, "audio", vocoder=voc, griffin_lim_iters=args.griffin_lim_iters)


def _conditions(pipe: Any, args: argparse.Namespace) -> tuple[int, dict, list[dict]]:
    from diffaudio.conditioning import sample_conditions

    names = (pipe.model.config.label_names, pipe.model.config.speaker_names)
    return sample_conditions(*names, args.labels, args.speakers, args.n)


def _write(args: argparse.Namespace, pipe: Any, waves: Any, specs: Any, names: list, **kw) -> Any:
    """save_outputs in --wav-format; the note on clips scaled down to -1 dBFS to stderr."""
    from diffaudio.outputs import level_note, save_outputs

    options = {"names": names, "wav_format": args.wav_format, **kw}
    saved = save_outputs(args.out, waves, specs, pipe.spectrogram, **options)
    if note := level_note(saved.levels):
        print(note, file=sys.stderr)
    return saved.index


def _save(args: argparse.Namespace, pipe: Any, specs: Any, names: list, records: list) -> None:
    kit.write_run(args.out, args)
    settings = kit.sampling_record(args, pipe)  # what ran: the folder's defaults filled in
    records = [{**r, **settings} for r in records]
    index = _write(args, pipe, pipe.to_waveform(specs), specs, names, records=records)
    print(f"{len(names)} WAVs and spectrogram PNGs in {args.out} (index: {index})")


def _sample(args: argparse.Namespace) -> None:
    pipe = _open(args)
    n, ids, records = _conditions(pipe, args)
    specs = pipe.sample(n, **ids, **kit.sampling(args, pipe))
    names = [f"{i:04d}_{r['label']}_{r['speaker']}" for i, r in enumerate(records)]
    _save(args, pipe, specs, names, records)


def _edit(args: argparse.Namespace) -> None:
    pipe, source = _open(args), kit.check_input(args.input, "--input", "an audio file or PNG")
    from diffaudio.pipeline import keep_mask
    from diffaudio.spectrogram import load_spectrogram

    x = load_spectrogram(source, pipe.spectrogram)
    keep = keep_mask(pipe.spectrogram, gap=args.gap, keep_until=args.keep_until)
    n, ids, records = _conditions(pipe, args)
    x, regenerate = x[None, None].expand(n, -1, -1, -1), ~keep.reshape(1, 1, 1, -1)
    edited = pipe.inpaint(x, regenerate, **ids, **kit.sampling(args, pipe))
    what = {"source": source, "gap": args.gap, "keep_until": args.keep_until}
    names = [f"{Path(source).stem}_edit{i}" for i in range(n)]
    _save(args, pipe, edited, names, [r | what for r in records])


def _eval(args: argparse.Namespace) -> None:
    pipe = _open(args)
    judge_dir = kit.check_model_dir(args.judge, "audio", option="--judge")
    from diffaudio.evaluate import sample_every_class
    from diffaudio.judge import Judge
    from diffcore.io import from_pretrained

    judge, names = from_pretrained(Judge, judge_dir), pipe.model.config.label_names
    _, real = load(args, pipe.spectrogram, label_names=judge.config.label_names)
    sampling = kit.sampling(args, pipe)
    labels, specs, waves, scores = sample_every_class(pipe, judge, args.per_class, real, **sampling)
    if args.out:
        files = [f"{i:04d}_{names[y]}" for i, y in enumerate(labels.tolist())]
        _write(args, pipe, waves, specs, files)
        kit.write_run(args.out, args, report=scores.to_dict())
    print(json.dumps(scores.to_dict(), indent=2))
