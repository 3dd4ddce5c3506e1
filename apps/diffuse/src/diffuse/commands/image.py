"""``diffuse train|sample|edit|eval image`` and ``diffuse train image-judge`` (diffimage)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from diffuse import kit

DATA = "a folder (Hub parquet layout, or a subfolder per class), a .parquet file, or hub:NAME"
# diffimage.model.CRAPPIFIERS (a test keeps them equal), here so --help imports no torch
CRAPPIFIERS = ("blur", "downsample", "pixelate", "jpeg", "noise")
PREVIEW_ROWS, PREVIEW = 8, {"steps": 20, "guidance": 2.0}  # the grid a training run ends with
HELP = {  # command: (its line in `diffuse <verb> --help`, --out)
    "train image": ("train an image model", "run folder: final/, checkpoints/, samples.png"),
    "train image-judge": ("train the classifier `eval image` scores with", "judge run folder"),
    "sample image": ("sample images", "folder for images/NNNN_<class>.png and grid.png"),
    "edit image": ("img2img, or inpainting with --mask", "folder for edited/ and grid.png"),
    "eval image": ("FID, KID and judge accuracy of samples", "folder for run.json, samples.png"),
}


def register(verbs: dict[str, Any]) -> None:
    add = kit.commands(verbs, HELP)
    train = add("train image", _train)
    data_options(train)
    options = {"steps": 3000, "batch_size": 128, "lr": 2e-3, "crappifiers": CRAPPIFIERS}
    g = kit.training_options(train, process=True, **options)
    g.add_argument("--preset", default="fmnist", help="U-Net preset in shared/presets/image.json")
    g.add_argument("--label-dropout", type=kit.fraction, default=0.1, help="share without label")
    g.add_argument("--unconditional", action="store_true", help="ignore the labels")
    g.add_argument("--hflip", action="store_true", help="mirror half of each batch")
    g.add_argument("--text-encoder", help="local transformers folder for --caption-column")
    g.add_argument("--no-preview", action="store_true", help="write no samples.png at the end")
    judge = add("train image-judge", _train_judge)
    data_options(judge).add_argument("--test-split", default="test", help="split to score")
    kit.training_options(judge, steps=2000, batch_size=256, lr=4e-3, ema=False, minutes=False)
    sample = add("sample image", _sample)
    _model_options(sample, n=64)
    edit = add("edit image", _edit)
    _model_options(edit)
    g = kit.group(edit, "data")
    g.add_argument("--input", nargs="+", required=True, help="image files or folders")
    g.add_argument("--strength", type=kit.share, default=0.5, help="img2img: share of steps run")
    g.add_argument("--mask", help="inpainting: mask image, white = repaint")
    evaluate = add("eval image", _eval, out_required=False)
    _model_options(evaluate, n=1000)
    kit.model_options(evaluate, option="--judge", help="judge folder (train image-judge --out)")
    data_options(evaluate, split="test")


def data_options(parser: argparse.ArgumentParser, split: str = "train") -> Any:
    g = kit.data_options(parser, help=DATA)
    g.add_argument("--split", default=split, help="split of the data set")
    g.add_argument("--limit", type=kit.positive_int, help="use only the first N rows")
    g.add_argument("--size", type=kit.dimensions, help="HxW (e.g. 32x32) to fit images to")
    fits = ("none", "resize", "center_crop", "pad")
    g.add_argument("--fit", default="none", choices=fits, help="how other sizes are fitted")
    g.add_argument("--channels", type=int, choices=(1, 3, 4), help="convert to this many")
    g.add_argument("--image-column", help="column of images (default: the first image column)")
    g.add_argument("--label-column", help="column of class labels (default: label or labels)")
    g.add_argument("--caption-column", help="column of captions (needs --text-encoder)")
    return g


def _model_options(parser: argparse.ArgumentParser, n: int | None = None) -> None:
    g = kit.model_options(parser, experts=True)
    g.add_argument("--compile", action="store_true", help="torch.compile it")
    g = kit.sampling_options(parser, "continuous", "dpmpp_2m", steps=20, guidance=2.0)
    g.add_argument("--labels", help="'all', 'none', or class ids or names, comma-separated")
    g.add_argument("--captions", help="captions separated by '|', cycled over the images")
    if n is not None:
        kit.count_option(parser, default=n, help="number of images")


def load_data(args: argparse.Namespace, split: str | None = None) -> Any:
    kit.check_input(args.data, "--data", DATA, hub=True)
    from diffimage import ImageSpec, load_images

    spec = ImageSpec(size=args.size, channels=args.channels, fit=args.fit)
    columns = {k: getattr(args, k) for k in ("image_column", "label_column", "caption_column")}
    return load_images(args.data, split=split or args.split, spec=spec, limit=args.limit, **columns)


def _sampling(pipe: Any, args: argparse.Namespace, n: int) -> dict[str, Any]:
    """The keyword arguments of ``pipe.sample``/``edit``/``inpaint`` for ``n`` images."""
    from diffimage.conditioning import parse_conditions

    text = {"labels": args.labels, "captions": args.captions}
    return kit.sampling(args, pipe) | parse_conditions(pipe.model, n, **text)


def _train(args: argparse.Namespace) -> None:
    budget = kit.Budget(args.minutes, grad_accum=args.grad_accum)
    data = load_data(args)
    from diffimage import ImagePipeline, train_model
    from diffimage.conditioning import caption_encoder
    from diffimage.images import save_preview
    from diffimage.model import model_for_data

    device = kit.resolve_device(args.device)
    if args.caption_column and not args.text_encoder:
        raise kit.UsageError("no --text-encoder, --caption-column, expected an encoder folder")
    encoder = args.caption_column and caption_encoder(data, args.text_encoder, device=device)
    shape = {"conditional": not args.unconditional, "encoder": encoder} | kit.process_options(args)
    model = model_for_data(args.preset, data, **shape)
    kit.initialise(model, args, "image")
    steps, stop_at, row = _plan(model, data, args, device, budget)
    config = kit.train_config(args, device=device, steps=steps, deadline=stop_at)
    out, params = Path(args.out), sum(p.numel() for p in model.parameters())
    kit.write_run(out, args, parameters=params, model_config=model.config, train_config=config)
    print(f"{len(data)} images {data.size} x {data.channels}, {params:,} parameters")
    extra = {"label_dropout": args.label_dropout, "hflip": args.hflip, "text_encoder": encoder}
    result = train_model(model, data, config, out_dir=out, device=device, **extra)
    kit.print_result(result)
    if args.no_preview:
        print("preview: none, --no-preview")
        return
    rows = kit.preview_rows(args, budget, PREVIEW_ROWS, row)  # those the time left allows
    pipe = rows and ImagePipeline.from_pretrained(result.final_model, device=device)
    grid = rows and save_preview(pipe, out / "samples.png", rows, seed=args.seed, **PREVIEW)
    print(f"preview: {grid or kit.no_preview(args)}")


def _plan(model: Any, data: Any, args: argparse.Namespace, device: str, budget: Any) -> tuple:
    """Steps, the loop's deadline and the seconds of one preview row that fit --minutes."""
    if not budget:
        return args.steps, None, 0.0
    from diffimage.budget import training_costs

    options = {"precision": args.precision, "device": device, "preview": PREVIEW}
    step, row = training_costs(model, data, args.batch_size, **options)
    preview = 0.0 if args.no_preview else min(PREVIEW_ROWS * row, 15 * budget.minutes)  # <= 1/4
    return (*budget.plan(step, after=preview + kit.SAVE_SECONDS), row)


def _train_judge(args: argparse.Namespace) -> None:
    data = load_data(args)
    from diffimage import judge_accuracy, load_judge, train_judge

    device, out = kit.resolve_device(args.device), Path(args.out)
    config = kit.train_config(args, device=device, weight_decay=5e-4)
    kit.write_run(out, args, train_config=config)
    result = train_judge(data, out_dir=out, config=config, device=device)
    judge = load_judge(result.final_model, device=device)
    accuracy = judge_accuracy(judge, load_data(args, split=args.test_split))
    (out / "accuracy.json").write_text(json.dumps({args.test_split: accuracy}) + "\n")
    print(f"judge: {result.final_model}\naccuracy on {args.test_split}: {accuracy:.4f}")


def _sample(args: argparse.Namespace) -> None:
    pipe = kit.open_pipeline(args, "image", compile=args.compile)
    from diffimage.images import sample_names, save_sample_files

    options = _sampling(pipe, args, args.n)
    images, labels = pipe.sample(args.n, **options), options.get("labels")
    by_class = labels is not None and args.labels in (None, "all")
    columns = pipe.model.num_classes if by_class else None  # a column per class
    names = sample_names(labels, pipe.class_names, args.n)
    kit.write_run(args.out, args)
    print("{} and {}".format(*save_sample_files(images, args.out, names, columns=columns)))


def _edit(args: argparse.Namespace) -> None:
    kit.check_input(args.input, "--input", "image files or folders")
    pipe = kit.open_pipeline(args, "image", compile=args.compile)
    from diffimage import load_image_files, load_mask
    from diffimage.images import save_sample_files

    size = pipe.model.config.image_size
    images, files = load_image_files(args.input, channels=pipe.model.channels, size=size)
    options = _sampling(pipe, args, len(images))
    if args.mask:
        edited = pipe.inpaint(images, load_mask(args.mask, size=size), **options)
    else:
        edited = pipe.edit(images, args.strength, **options)
    kit.write_run(args.out, args)
    grid = {"folder": "edited", "grid": (images, edited), "columns": len(images)}  # inputs above
    print("{} and {}".format(*save_sample_files(edited, args.out, [f.stem for f in files], **grid)))


def _eval(args: argparse.Namespace) -> None:
    pipe = kit.open_pipeline(args, "image", compile=args.compile)
    judge_dir = kit.check_model_dir(args.judge, "image", option="--judge")
    from diffimage import judge_features, load_judge, save_grid, score_samples

    judge = load_judge(judge_dir, device=pipe.device)
    reference = judge_features(judge, load_data(args).images)
    options = _sampling(pipe, args, args.n)
    samples = pipe.sample(args.n, **options)
    r = score_samples(judge, samples, reference, labels=options.get("labels"))
    used = kit.sampling_record(args, pipe)
    print(f"{r.samples} samples, {used['sampler']} x{used['steps']}, {args.guidance:g}x CFG")
    accuracy = "n/a" if r.accuracy is None else f"{r.accuracy:.4f}"
    print(f"FID {r.fid:.3f}  KID {r.kid:.5f} ± {r.kid_std:.5f}  judge accuracy {accuracy}")
    if args.out:
        kit.write_run(Path(args.out), args, report=r)
        save_grid(samples[:100], Path(args.out) / "samples.png", columns=10, scale=2)
