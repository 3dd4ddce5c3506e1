"""The option groups every domain's commands share, so one flag means one thing everywhere.

A domain's module makes its parser with :func:`add_command`, adds the groups it needs (data,
model, sampling, training, output, run) and then its own flags, into the same groups through
:func:`group`. Values are checked here (whole numbers >= 1 for counts, known sampler names), so
a bad value is a usage error that names the option and what was expected.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from typing import Any

from diffuse.kit.errors import ArgumentParser, UsageError
from diffuse.kit.lock import holding_out
from diffuse.kit.record import reporting

# The sampler names of diffcore's registries (a test keeps them equal); listed here so that
# `diffuse --help` need not import torch.
SAMPLERS = {
    "continuous": (
        "ddpm",
        "ddim",
        "euler",
        "euler_ancestral",
        "heun",
        "dpmpp_2m",
        "dpmpp_3m",
        "unipc",
    ),
    "token": ("masked_ancestral", "confidence"),
    "refine": ("cold", "direct"),  # models trained with --process <crappifier>
    "substitute": ("substitute",),  # token models trained with --process substitution
}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's help with each option's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or action.required
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or (isinstance(default, (list, tuple)) and not default)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


# Value checks: "<what>; expected <what>" becomes "<what>, <option>, expected <what>".


def positive_int(text: str) -> int:
    """A whole number >= 1 (counts: --steps, --n, --batch-size...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a whole number; expected a whole number >= 1"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small; expected a whole number >= 1")
    return value


def _number(text: str) -> float:
    """``text`` as a finite float, NaN when it is not one (so every range check fails)."""
    try:
        value = float(text)
    except ValueError:
        return float("nan")
    return value if math.isfinite(value) else float("nan")


def positive_float(text: str) -> float:
    """A finite number > 0 (--lr, --minutes, --top-p...)."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not allowed; expected a finite number > 0")
    return value


def non_negative(text: str) -> float:
    """A finite number >= 0 (--guidance, --temperature...)."""
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not allowed; expected a finite number >= 0")
    return value


def share(text: str) -> float:
    """A number in (0, 1] (--strength, --top-p, --fraction: a share of something that is run)."""
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not allowed; expected a number in (0, 1]")
    return value


def dimensions(text: str) -> tuple[int, ...]:
    """Sizes written AxB (e.g. 32x32 for an image's height and width)."""
    try:
        sizes = tuple(int(s) for s in text.lower().split("x"))
    except ValueError:
        sizes = ()
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not allowed; expected sizes like 32x32")
    return sizes


def interval(text: str) -> tuple[float, float]:
    """START:END (e.g. seconds of a recording), START < END."""
    try:
        start, end = (float(v) for v in text.split(":"))
    except ValueError:
        start = end = 0.0
    if not start < end:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not allowed; expected START:END, START < END"
        )
    return start, end


def fraction(text: str) -> float:
    """A number in [0, 1) (dropout rates, held-out shares)."""
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not allowed; expected a number in [0, 1)")
    return value


# Parsers and groups


GROUPS = ("data", "model", "sampling", "training", "output", "run")


def add_command(
    verbs: dict[str, Any],
    command: str,
    run: Any,
    help: str,
    out: str | None = None,
    *,
    out_required: bool = True,
    out_default: str | None = None,
    description: str = "",
) -> ArgumentParser:
    """The parser of ``diffuse <command>`` (e.g. "train image") running ``run(args)``, with the
    shared help format, its option groups in a fixed order, --seed, --device and --debug, and
    ``--out`` when ``out`` gives its help."""
    verb, name = command.split()
    parser = verbs[verb].add_parser(
        name, help=help, description=description or help, formatter_class=HelpFormatter
    )
    training = verb in ("train", "distill")  # a run folder: locked, and reported at the end
    parser.set_defaults(run=holding_out(reporting(run)) if training else run)
    for title in GROUPS:  # made now for their order; empty ones stay out of --help
        group(parser, title)
    if out is not None:
        output_options(parser, help=out, required=out_required, default=out_default)
    g = group(parser, "run")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1...; auto = cuda when available"
    )
    g.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,  # keep a `diffuse --debug ...` given before the verb
        help="show the Python traceback of an error",
    )
    return parser


def commands(verbs: dict[str, Any], table: dict[str, tuple]) -> Any:
    """``add(command, run, **options)``: :func:`add_command` with the help line and the --out
    help of ``table[command]`` (None: no --out)."""

    def add(command: str, run: Any, **options: Any) -> ArgumentParser:
        return add_command(verbs, command, run, *table[command], **options)

    return add


def group(parser: argparse.ArgumentParser, title: str) -> Any:
    """The parser's option group ``title`` (data, model, sampling, training, output, run), made
    on first use, so the kit's flags and a domain's own flags share one heading."""
    groups = parser.__dict__.setdefault("_kit_groups", {})
    if title not in groups:
        groups[title] = parser.add_argument_group(title)
    return groups[title]


def data_options(
    parser: argparse.ArgumentParser, *, help: str, positional: bool = False, required: bool = True
) -> Any:
    """``--data`` (or, with ``positional``, one or more data paths before the options)."""
    g = group(parser, "data")
    if positional:
        g.add_argument("data", nargs="+", help=help)
    else:
        g.add_argument("--data", required=required, help=help)
    return g


def model_options(
    parser: argparse.ArgumentParser,
    *,
    option: str = "--model",
    required: bool = True,
    help: str = "model folder: a training run's --out folder or its final/",
    experts: bool = False,
    stages: bool | None = None,
) -> Any:
    """--model (or ``option``); with ``experts``, --experts and, unless ``stages`` is False,
    --stages (cascades: the continuous domains)."""
    g = group(parser, "model")
    g.add_argument(option, required=required, help=help)
    if experts:
        g.add_argument(
            "--experts",
            metavar="FOLDER[,FOLDER]",
            help="models trained on the other noise ranges (train --noise-range); with --model "
            "they must cover all noise levels, each serving its own",
        )
    if experts if stages is None else stages:
        g.add_argument(
            "--stages",
            metavar="FOLDER[,FOLDER]",
            help="super-resolution stages (train --set low_res=[H,W]) run after --model in "
            "order, each given the samples before it (a cascade; sample and eval)",
        )
    return g


def process_spec(crappifiers: Sequence[str]) -> Any:
    """The --process type: "diffusion", "flow", or names of ``crappifiers`` joined by "+",
    each with an optional ":number" (the numbers are checked where the model is built)."""
    expected = "diffusion, flow" + ", or a crappifier spec" * bool(crappifiers)

    def check(text: str) -> str:
        if text in ("diffusion", "flow"):
            return text
        names = [item.partition(":")[0].strip() for item in text.split("+")]
        if not crappifiers or not all(name in crappifiers for name in names):
            known = f" of {', '.join(crappifiers)}" if crappifiers else ""
            raise argparse.ArgumentTypeError(f"'{text}' is not allowed; expected {expected}{known}")
        return text

    return check


def unit_range(text: str) -> tuple[float, float]:
    """LO,HI with 0 <= LO < HI <= 1 (a range of the schedule's times)."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        lo = hi = -1.0
    if not 0.0 <= lo < hi <= 1.0:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not allowed; expected LO,HI with 0 <= LO < HI <= 1"
        )
    return lo, hi


def count_option(parser: argparse.ArgumentParser, *, default: int | None, help: str) -> None:
    group(parser, "sampling").add_argument(
        "-n", "--n", type=positive_int, default=default, help=help
    )


def sampling_options(
    parser: argparse.ArgumentParser,
    family: str,
    sampler: str | None,
    *,
    steps: int | None,
    guidance: float,
    batch_size: int | None = None,
    sampler_help: str = "sampler",
    steps_help: str = "sampler steps (network calls)",
) -> Any:
    """--sampler (one of diffcore's names for ``family``), --steps, --guidance, --batch-size.
    ``sampler`` and ``steps`` are the defaults unless the model folder's sampling.json names
    its own (a distilled model): see :func:`sampling`."""
    g = group(parser, "sampling")
    parser.set_defaults(fallback_sampling={"sampler": sampler, "steps": steps})

    def default(value: Any) -> str:
        folder = ", unless the model folder's sampling.json names its own"
        return "" if value is None else f" (default: {value}{folder})"

    # a restorer (continuous) or a substitution model (token) refines with its own samplers
    names = SAMPLERS[family] + SAMPLERS["refine" if family == "continuous" else "substitute"]
    g.add_argument("--sampler", choices=names, help=sampler_help + default(sampler))
    g.add_argument("--steps", type=positive_int, help=steps_help + default(steps))
    g.add_argument(
        "--guidance", type=non_negative, default=guidance, help="classifier-free guidance (1 = off)"
    )
    if batch_size is not None:
        g.add_argument(
            "--batch-size", type=positive_int, default=batch_size, help="samples per batch"
        )
    g.add_argument(
        "--option",
        dest="sampler_option",
        type=sampler_option,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any keyword option of the chosen sampler (e.g. eta=0.5 for ddim); repeatable",
    )
    return g


def sampler_option(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` -> (name, value); the value is read as JSON (0.5, true, null, "x") and
    taken as a string otherwise. Whether the sampler takes it is checked by the pipeline."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=VALUE; expected e.g. eta=0.5")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


# Sampler options passed on as they are (``options=`` of a pipeline's sample, checked there
# against the chosen sampler's keywords): None (not given) leaves the sampler's default.
SAMPLER_OPTIONS = (
    *("temperature", "top_p", "confidence", "confidence_noise", "entropy_bound", "threshold"),
    *("block_size", "spacing", "reuse_unchanged"),
)


def sampling(args: argparse.Namespace, pipe: Any = None) -> dict[str, Any]:
    """The sampling options a command was given (``sampling_options``, the sampler's own
    options of SAMPLER_OPTIONS, --schedule as the grid, and --seed), as the keyword arguments
    of a pipeline's ``sample``, with a progress bar. A --sampler or --steps left out is what
    ``pipe``'s model folder names (sampling.json), else the command's default."""
    names = ("guidance", "seed", "batch_size")
    out = {k: getattr(args, k) for k in names if hasattr(args, k)} | {"progress": True}
    folder = getattr(pipe, "sampling_defaults", None) or {}
    own = getattr(getattr(pipe, "options_class", None), "REGISTRY", None)
    for key, fallback in getattr(args, "fallback_sampling", {}).items():
        if key == "sampler" and own is not None and fallback not in own:
            fallback = None  # e.g. a restorer's pipeline: its own default sampler
        value = getattr(args, key, None)
        value = folder.get(key, fallback) if value is None else value
        if value is not None:
            out[key] = value
    options = {k: getattr(args, k, None) for k in SAMPLER_OPTIONS}
    options = {k: v for k, v in options.items() if v is not None}
    if getattr(args, "schedule", None) is not None:
        options["grid"] = args.schedule
    options.update(getattr(args, "sampler_option", None) or [])
    return out | ({"options": options} if options else {})


def sampling_record(args: argparse.Namespace, pipe: Any) -> dict[str, Any]:
    """What ``pipe`` samples with under the command's options, as run records keep it: the
    sampler (the model's default when none was named), steps, guidance, its options, seed."""
    plan, run = pipe.plan(sampling(args, pipe))
    return plan.record() | {"seed": run["seed"]}


def token_sampler_options(g: Any) -> None:
    """The options of the token samplers (text, protein): the mask schedule, temperature,
    nucleus, and the confidence sampler's ranking; each left out is the sampler's default."""
    a = g.add_argument
    a("--schedule", choices=("linear", "cosine"), help="masked share per step (default: linear)")
    a("--temperature", type=non_negative, help="sampling temperature; 0 = argmax (default: 1)")
    a("--top-p", type=share, help="nucleus sampling: keep this much probability mass")
    a(
        "--confidence",
        choices=("probability", "margin", "entropy"),
        help="confidence sampler: rank positions by the drawn token's probability (MaskGIT, the "
        "default), or by the margin or entropy of the position's distribution (exact draws)",
    )
    a("--confidence-noise", type=non_negative, help="confidence: randomize the order (MaskGIT 4.5)")
    a(
        "--entropy-bound",
        type=positive_float,
        help="confidence sampler: also reveal, most confident first, as many tokens as keep the "
        "sum of their entropies minus the largest under this many nats (EB-sampler)",
    )
    a("--threshold", type=float, help="confidence: also reveal tokens at least this sure")
    a("--semi-ar-block", dest="block_size", type=positive_int, help="confidence: block length")
    a("--spacing", type=int, help="confidence: tokens revealed together lie more than this apart")
    reuse = {"dest": "reuse_unchanged", "action": "store_const", "const": False}
    a("--no-reuse", **reuse, help="call the network even when no token changed")


def training_options(
    parser: argparse.ArgumentParser,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    ema: bool = True,
    minutes: bool = True,
    precision: bool = True,
    checkpoint_every: int = 500,
    process: bool = False,
    crappifiers: Sequence[str] = (),
    token_experts: bool = False,
) -> Any:
    """--steps, --minutes, --batch-size, --grad-accum, --lr, --ema, --ema-warmup, --precision,
    --checkpoint-every; with ``process``, --process (diffcore.processes.PROCESSES, and specs
    of the domain's ``crappifiers`` joined by "+") and --noise-range (:func:`process_options`);
    with ``token_experts``, --noise-range over masked shares."""
    g = group(parser, "training")
    if token_experts:
        noise_range_option(g, tokens=True)
    if process:
        crappify = (
            f"; or a crappification to undo instead, names of {', '.join(crappifiers)} joined "
            f"by '+', each with an optional ':number' (severity at t = 1), e.g. "
            f"{crappifiers[0]}+noise:0.3 (sampled with --sampler cold or direct)"
            if crappifiers
            else ""
        )
        g.add_argument(
            "--process",
            type=process_spec(crappifiers),
            default="diffusion",
            metavar="PROCESS",
            help="what the model learns to undo: Gaussian diffusion as the preset has it, or "
            "flow matching (straight path, velocity target, logit-normal times)" + crappify,
        )
        noise_range_option(g)
        g.add_argument(
            "--init",
            metavar="FOLDER",
            help="start from this model's weights (same shape), e.g. an expert from a full model",
        )
        g.add_argument(
            "--set",
            dest="model_settings",
            type=sampler_option,
            action="append",
            default=[],
            metavar="FIELD=VALUE",
            help='a field of the model\'s config, e.g. weighting="uniform" or prediction="eps" '
            "(the value read as JSON); repeatable",
        )
    g.add_argument("--steps", type=positive_int, default=steps, help="optimizer steps")
    if minutes:
        g.add_argument(
            "--minutes",
            type=positive_float,
            help="wall-clock budget of the whole command (loading, training, preview, saving); "
            "sets --steps to fit it",
        )
    g.add_argument(
        "--batch-size", type=positive_int, default=batch_size, help="samples per micro-batch"
    )
    g.add_argument(
        "--grad-accum",
        type=positive_int,
        default=1,
        help="micro-batches per optimizer step: a step sees batch-size x grad-accum (x the "
        "processes under torchrun) samples",
    )
    g.add_argument("--lr", type=positive_float, default=lr, help="peak learning rate (one-cycle)")
    if ema:
        g.add_argument(
            "--ema",
            type=fraction,
            help="EMA decay of the weights; 0 = no EMA (default: a window of a tenth of the run)",
        )
        g.add_argument(
            "--ema-warmup",
            action="store_true",
            help="let the EMA decay rise as min(decay, (1 + n) / (10 + n)) over the first steps",
        )
    if precision:
        g.add_argument(
            "--precision",
            choices=PRECISIONS,
            default="auto",
            help="autocast precision; auto = fp32 on CPU, bf16 on CUDA",
        )
    g.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=checkpoint_every,
        help="steps between checkpoints (re-running the command resumes)",
    )
    return g


def noise_range_option(group: Any, *, tokens: bool = False) -> None:
    """--noise-range LO,HI: train an expert on that part of the schedule only (of the masked
    shares, for the token domains)."""
    what = "masked shares (0 = nothing masked, 1 = all)" if tokens else "times of the schedule"
    group.add_argument(
        "--noise-range",
        type=unit_range,
        default=(0.0, 1.0),
        metavar="LO,HI",
        help=f"train only on these {what}{'' if tokens else ' (0 = clean, 1 = pure noise)'}: an "
        "expert for that range, sampled with the others through --experts",
    )


def check_corruption(args: argparse.Namespace) -> None:
    """A token domain's --process other than "mask" and --diffusion-block belong to the
    denoiser (--objective diffusion); substitution is not block diffusion. UsageError else."""
    process, objective = args.process, args.objective
    if objective != "diffusion" and args.diffusion_block is not None:
        raise UsageError("--diffusion-block is for diffusion, --objective, expected diffusion")
    if objective != "diffusion" and process != "mask":
        raise UsageError(
            f"--process {process} with --objective {objective}, --process, expected "
            "--objective diffusion"
        )
    if process != "mask" and args.diffusion_block is not None:
        raise UsageError(
            f"--process {process} with --diffusion-block, --process, expected a whole-sequence "
            "model (no --diffusion-block)"
        )


def process_options(args: argparse.Namespace) -> dict[str, Any]:
    """What --process, --noise-range, --seed and --set ask of a domain's new model: ``process``,
    ``time_range``, ``seed`` (its initial weights, so one command gives one model) and
    ``settings`` (config fields) when --set was given."""
    options = {"process": args.process, "time_range": args.noise_range, "seed": args.seed}
    return options | ({"settings": dict(args.model_settings)} if args.model_settings else {})


def init_option(args: argparse.Namespace, domain: str) -> dict[str, Any]:
    """``{"init": model folder}`` for --init (checked: a run folder gives its final/), or {}."""
    if not getattr(args, "init", None):
        return {}
    from diffuse.kit.paths import check_model_dir

    return {"init": check_model_dir(args.init, domain, option="--init")}


def initialise(model: Any, args: argparse.Namespace, domain: str) -> None:
    """Load --init's weights into ``model`` (a fresh model of the same shape), if given."""
    if init := init_option(args, domain).get("init"):
        from diffcore.io import WEIGHTS_NAME, load_weights

        load_weights(model, init / WEIGHTS_NAME)


def output_options(
    parser: argparse.ArgumentParser, *, help: str, required: bool = True, default: str | None = None
) -> Any:
    g = group(parser, "output")
    g.add_argument("--out", required=required and default is None, default=default, help=help)
    return g
