"""``diffuse train|sample|edit|eval image``: image diffusion from the command line.

Every command writes ``run.json`` (its arguments, resolved configs, seed and git revision) next to
its outputs. Heavy packages are imported inside the handlers so ``diffuse --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from diffuse.commands._shared import git_revision, resolve_device

SAMPLER_NAMES = ("ddpm", "ddim", "euler", "euler_ancestral", "heun", "dpmpp_2m")


def register(verbs: dict[str, Any]) -> None:
    train = verbs["train"].add_parser(
        "image",
        help="train an image diffusion model (U-Net preset) on an image data set",
        description="Train on a Hugging Face data set name, a local folder (Hub parquet layout or "
        "an image folder, one subfolder per class) or one .parquet file. Re-running the same "
        "command resumes from the newest checkpoint in --out.",
    )
    _data_options(train)
    train.add_argument("--out", required=True, help="run folder: checkpoints/, final/, samples.png")
    train.add_argument(
        "--preset", default="fmnist", help="U-Net preset in shared/presets/image.json"
    )
    train.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    train.add_argument("--minutes", type=float, help="train for this wall-clock budget instead")
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--lr", type=float, default=2e-3, help="peak one-cycle learning rate")
    train.add_argument(
        "--ema", type=float, help="EMA decay (0 = off; default: window 10%% of the run)"
    )
    train.add_argument("--label-dropout", type=float, default=0.1, help="for guidance")
    train.add_argument("--unconditional", action="store_true", help="ignore the labels")
    train.add_argument("--hflip", action="store_true", help="mirror half of each batch")
    train.add_argument("--text-encoder", help="local transformers folder for --caption-column")
    train.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                       help="autocast: auto = fp32 on CPU, bf16 on CUDA")  # fmt: skip
    train.add_argument("--checkpoint-every", type=int, default=500)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    train.set_defaults(run=_train)

    judge = verbs["train"].add_parser(
        "image-judge",
        help="train the judge classifier used by `diffuse eval image`",
        description="Train a small ResNet on the labelled training split; its penultimate "
        "features give FID and KID. Prints its accuracy on --test-split.",
    )
    _data_options(judge)
    judge.add_argument("--out", required=True, help="folder for the judge (final/ holds it)")
    judge.add_argument("--test-split", default="test", help="split to report accuracy on")
    judge.add_argument("--steps", type=int, default=2000)
    judge.add_argument("--batch-size", type=int, default=256)
    judge.add_argument("--seed", type=int, default=0)
    judge.add_argument("--device")
    judge.set_defaults(run=_train_judge)

    sample = verbs["sample"].add_parser(
        "image", help="sample images: a PNG grid plus single PNGs",
        description="Writes grid.png and images/NNNN_<class>.png under --out.",
    )  # fmt: skip
    _model_options(sample)
    sample.add_argument("--out", required=True)
    sample.add_argument("--n", type=int, default=64, help="number of images")
    sample.set_defaults(run=_sample)

    edit = verbs["edit"].add_parser(
        "image", help="img2img (--strength) or inpainting (--mask) of image files",
        description="Edits each input image; writes edited PNGs and grid.png (inputs above, "
        "edits below). With --mask, white mask pixels are repainted and the rest is kept.",
    )  # fmt: skip
    _model_options(edit)
    edit.add_argument("--input", nargs="+", required=True, help="image files or folders")
    edit.add_argument("--out", required=True)
    edit.add_argument("--strength", type=float, default=0.5, help="img2img: share of steps run")
    edit.add_argument("--mask", help="inpainting: mask image, white = repaint")
    edit.set_defaults(run=_edit)

    evaluate = verbs["eval"].add_parser(
        "image", help="FID, KID and judge accuracy of class-conditional samples",
        description="Samples --n images evenly over the classes and scores them with the judge "
        "against the real --split images.",
    )  # fmt: skip
    _model_options(evaluate)
    _data_options(evaluate, split="test")
    evaluate.add_argument(
        "--judge", required=True, help="judge folder (train image-judge .../final)"
    )
    evaluate.add_argument("--out", help="folder for eval.json and a sample grid")
    evaluate.add_argument("--n", type=int, default=1000, help="number of samples")
    evaluate.set_defaults(run=_eval)


def _data_options(parser: argparse.ArgumentParser, split: str = "train") -> None:
    parser.add_argument("--data", required=True, help="data set name, folder or .parquet file")
    parser.add_argument("--split", default=split)
    parser.add_argument("--limit", type=int, help="use only the first N rows")
    parser.add_argument("--size", help="HxW (e.g. 32x32) to fit every image to")
    parser.add_argument("--fit", default="none", choices=("none", "resize", "center_crop", "pad"))
    parser.add_argument("--channels", type=int, choices=(1, 3, 4))
    parser.add_argument("--image-column")
    parser.add_argument("--label-column")
    parser.add_argument("--caption-column")


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder (a run's final/)")
    parser.add_argument("--labels", help="'all', class ids or names, comma-separated")
    parser.add_argument("--captions", help="captions separated by '|', cycled over the images")
    parser.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance")
    parser.add_argument("--sampler", default="dpmpp_2m", choices=SAMPLER_NAMES)
    parser.add_argument("--steps", type=int, default=20, help="sampler steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the denoiser: one compile, then faster steps",
    )


# Helpers


def _load_data(args: argparse.Namespace, split: str | None = None) -> Any:
    from diffimage import ImageSpec, load_images

    size = None
    if args.size:
        try:
            size = tuple(int(s) for s in args.size.lower().split("x"))
        except ValueError:
            raise SystemExit(f"--size must look like 32x32, got {args.size!r}") from None
    spec = ImageSpec(size=size, channels=args.channels, fit=args.fit)
    return load_images(
        args.data, split=split or args.split, spec=spec, limit=args.limit,
        image_column=args.image_column, label_column=args.label_column,
        caption_column=args.caption_column,
    )  # fmt: skip


def _write_run(out: Path, args: argparse.Namespace, **resolved: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "run"}
    record = {"args": settings, "git_revision": git_revision(), **resolved}
    (out / "run.json").write_text(json.dumps(record, indent=2, default=str) + "\n")


def _conditioning(pipe: Any, args: argparse.Namespace, n: int) -> dict[str, Any]:
    from diffimage import parse_labels

    cond: dict[str, Any] = {"guidance": args.guidance}
    if pipe.model.num_classes is not None and args.labels != "none":
        cond["labels"] = parse_labels(args.labels or "all", n, pipe.class_names)
    if args.captions:
        parts = args.captions.split("|")
        cond["captions"] = [parts[i % len(parts)] for i in range(n)]
    return cond


def _names(pipe: Any, labels: Any, n: int) -> list[str]:
    if labels is None:
        return [f"{i:04d}" for i in range(n)]
    names = pipe.class_names
    safe = lambda s: "".join(c if c.isalnum() else "-" for c in s)
    return [f"{i:04d}_{safe(names[y]) if names else y}" for i, y in enumerate(labels.tolist())]


# Handlers


def _train(args: argparse.Namespace) -> int:
    import torch

    from diffcore.training import TrainConfig, steps_for_budget
    from diffimage import ImagePipeline, TextEncoder, attach_captions, build_model, train_model
    from diffimage.budget import ema_decay_for, seconds_per_step
    from diffimage.images import save_grid

    device = resolve_device(args.device)
    data = _load_data(args)
    encoder = None
    if args.caption_column:
        if not args.text_encoder:
            raise SystemExit("--caption-column needs --text-encoder (a local transformers folder)")
        encoder = TextEncoder(args.text_encoder, device=device)
        attach_captions(data, encoder)
    conditional = data.labels is not None and not args.unconditional
    if not conditional:
        data.labels = None
    model = build_model(
        args.preset, channels=data.channels, image_size=data.size,
        num_classes=data.num_classes if conditional else None,
        class_names=data.class_names if conditional else (),
        context_dim=encoder.dim if encoder else None,
        text_encoder="text_encoder" if encoder else None,
    )  # fmt: skip
    steps = args.steps
    if args.minutes:
        precision = args.precision if args.precision != "auto" else "fp32"
        if precision == "fp32" and args.precision == "auto" and device.startswith("cuda"):
            precision = "bf16"
        per_step = seconds_per_step(
            model, data, args.batch_size, device=device, precision=precision
        )
        steps = steps_for_budget(args.minutes * 60, per_step)
        print(f"{per_step:.3f} s per step -> {steps} steps in {args.minutes:g} min")
    config = TrainConfig(
        steps=steps, batch_size=args.batch_size, lr=args.lr,
        ema_decay=ema_decay_for(steps) if args.ema is None else (args.ema or None),
        checkpoint_every=args.checkpoint_every, seed=args.seed, precision=args.precision,
        log_every=max(1, min(50, steps // 20)),
    )  # fmt: skip
    out = Path(args.out)
    params = sum(p.numel() for p in model.parameters())
    _write_run(
        out, args, images=len(data), parameters=params, steps=steps,
        model_config=dataclasses.asdict(model.config), train_config=dataclasses.asdict(config),
    )  # fmt: skip
    print(
        f"{len(data)} images {data.size[0]}x{data.size[1]}x{data.channels}, {params:,} parameters"
    )
    start = time.perf_counter()
    result = train_model(
        model, data, config, out_dir=out, label_dropout=args.label_dropout, hflip=args.hflip,
        text_encoder=encoder, device=device,
    )  # fmt: skip
    print(
        f"trained to step {result.step} (loss {result.loss:.4f}) in {time.perf_counter() - start:.0f} s"
    )
    # A preview: 8 rows, one column per class (or 8 columns of unconditional samples).
    pipe = ImagePipeline.from_pretrained(result.final_model, device=device)
    classes = pipe.model.num_classes
    columns = min(classes, 16) if classes else 8
    labels = torch.arange(8 * columns) % columns if classes else None
    preview = pipe.sample(8 * columns, labels=labels, guidance=2.0, seed=args.seed)
    grid = save_grid(preview, out / "samples.png", columns=columns, scale=2)
    print(f"model: {result.final_model}\npreview: {grid}")
    return 0


def _train_judge(args: argparse.Namespace) -> int:
    from diffcore.training import TrainConfig
    from diffimage import judge_accuracy, load_judge, train_judge

    device = resolve_device(args.device)
    data = _load_data(args)
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=4e-3, weight_decay=5e-4, ema_decay=None,
        checkpoint_every=500, seed=args.seed, log_every=50,
    )  # fmt: skip
    out = Path(args.out)
    _write_run(out, args, train_config=dataclasses.asdict(config))
    result = train_judge(data, out_dir=out, config=config, device=device)
    judge = load_judge(result.final_model, device=device)
    test = _load_data(args, split=args.test_split)
    accuracy = judge_accuracy(judge, test)
    (out / "accuracy.json").write_text(json.dumps({args.test_split: accuracy}) + "\n")
    print(f"judge: {result.final_model}\naccuracy on {args.test_split}: {accuracy:.4f}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from diffimage import ImagePipeline, save_grid, save_images

    pipe = ImagePipeline.from_pretrained(
        args.model, device=resolve_device(args.device), compile=args.compile
    )
    cond = _conditioning(pipe, args, args.n)
    images = pipe.sample(
        args.n, sampler=args.sampler, steps=args.steps, seed=args.seed,
        batch_size=args.batch_size, progress=True, **cond,
    )  # fmt: skip
    out = Path(args.out)
    _write_run(out, args)
    save_images(images, out / "images", names=_names(pipe, cond.get("labels"), args.n))
    columns = (
        pipe.model.num_classes
        if cond.get("labels") is not None and args.labels in (None, "all")
        else None
    )
    grid = save_grid(images, out / "grid.png", columns=columns, scale=2)
    print(f"{args.n} images in {out / 'images'}\ngrid: {grid}")
    return 0


def _edit(args: argparse.Namespace) -> int:
    import torch

    from diffimage import ImagePipeline, load_image_files, load_mask, save_grid, save_images

    pipe = ImagePipeline.from_pretrained(
        args.model, device=resolve_device(args.device), compile=args.compile
    )
    size = pipe.model.config.image_size
    images, files = load_image_files(args.input, channels=pipe.model.channels, size=size)
    cond = _conditioning(pipe, args, len(images))
    common = dict(sampler=args.sampler, steps=args.steps, seed=args.seed, progress=True, **cond)
    if args.mask:
        mask = load_mask(args.mask, size=size)
        edited = pipe.inpaint(images, mask, batch_size=args.batch_size, **common)
    else:
        edited = pipe.img2img(images, args.strength, batch_size=args.batch_size, **common)
    out = Path(args.out)
    _write_run(out, args, inputs=[str(f) for f in files])
    save_images(edited, out / "edited", names=[f.stem for f in files])
    grid = save_grid(torch.cat([images, edited]), out / "grid.png", columns=len(images), scale=2)
    print(f"{len(files)} edited images in {out / 'edited'}\ngrid: {grid}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from diffimage import ImagePipeline, judge_features, load_judge, save_grid, score_samples

    device = resolve_device(args.device)
    pipe = ImagePipeline.from_pretrained(args.model, device=device, compile=args.compile)
    judge = load_judge(args.judge, device=device)
    real = _load_data(args)
    reference = judge_features(judge, real.images)
    cond = _conditioning(pipe, args, args.n)
    samples = pipe.sample(
        args.n, sampler=args.sampler, steps=args.steps, seed=args.seed,
        batch_size=args.batch_size, progress=True, **cond,
    )  # fmt: skip
    report = score_samples(judge, samples, reference, labels=cond.get("labels"))
    accuracy = "n/a" if report.accuracy is None else f"{report.accuracy:.4f}"
    print(
        f"samples {report.samples}  sampler {args.sampler} x{args.steps}  guidance {args.guidance:g}\n"
        f"FID {report.fid:.3f}  KID {report.kid:.5f} ± {report.kid_std:.5f}  judge accuracy {accuracy}"
    )
    if args.out:
        out = Path(args.out)
        _write_run(out, args, report=dataclasses.asdict(report))
        save_grid(samples[:100], out / "samples.png", columns=10, scale=2)
    return 0
