"""The `diffuse` command: ``diffuse <verb> <domain> [options]`` plus ``diffuse demo`` and
``diffuse report RUN_DIR``.

Each domain's subcommands live in ``diffuse.commands.<domain>`` and are attached by its
``register(verbs)``, which adds parsers under the verbs it supports (``verbs["train"]`` etc.)
with the shared option groups of ``diffuse.kit``. Domain modules import their heavy packages
inside their handlers, so ``diffuse --help`` is fast. Every error, from argparse or from a
handler, is reported here in one line (``diffuse.kit.errors``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from diffuse.kit import ArgumentParser, UsageError, main_process, report
from diffuse.kit.options import HelpFormatter, positive_int

VERBS = {
    "train": "train a model",
    "sample": "sample from a trained model",
    "edit": "edit existing data with a trained model (img2img, inpainting, infilling)",
    "eval": "evaluate samples or a trained model",
    "distill": "distil a trained model into students that sample in few network calls",
    "refine": "improve images, recordings or texts made anywhere with a model (boosting)",
}
# command modules: one per domain, and one per verb that spans domains
DOMAINS = ("image", "text", "audio", "vocoder", "protein", "distill", "refine", "levels")


def _demo(args: argparse.Namespace) -> int:
    if not args.toy:
        from diffuse.demo_run import parse_domains, run_demo

        domains = parse_domains(args.domains)  # before any training: a fast error
        data = dict(_domain_path(text) for text in args.data)
        command = " ".join(["diffuse", *args.argv])
        options = {"quick": args.quick, "steps": args.steps, "seed": args.seed}
        print(run_demo(Path(args.out), domains=domains, data=data, command=command, **options))
        return 0
    from diffuse.demo import run_demo

    try:
        calls = tuple(int(c) for c in args.calls.split(","))
    except ValueError:
        raise UsageError(
            f"'{args.calls}' is not a list of numbers, --calls, expected e.g. 10,20,50"
        ) from None
    print(run_demo(Path(args.out), n=args.n, calls=calls, seed=args.seed))
    return 0


def _domain_path(text: str) -> tuple[str, str]:
    domain, sep, path = text.partition("=")
    if not (sep and path):
        raise UsageError(f"'{text}' is not DOMAIN=PATH, --data, expected e.g. image=data/fmnist")
    return domain, path


def _report(args: argparse.Namespace) -> int:
    from diffuse.report import write_report

    path = write_report(args.run_dir)
    print(path)
    if args.open:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
    return 0


def _studio(argv: Sequence[str]) -> int:
    """``diffuse studio ...`` hands its arguments to the studio (apps/studio, the
    ``diffstudio`` package). It is imported only here: ``diffuse`` does not depend on it, so
    installing the command pulls no web server; the workspace installs both."""
    try:
        studio = importlib.import_module("diffstudio.cli")
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith("diffstudio"):
            raise
        raise UsageError(
            "the studio is not installed, diffuse studio, expected the diffstudio package "
            "(`uv sync --all-packages` in the workspace, or `pip install ./apps/studio`)"
        ) from None
    return studio.main(list(argv), prog="diffuse studio")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="diffuse",
        description="Train, sample and evaluate diffusion models across domains.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the Python traceback of an error"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="train, sample and show small models of every domain (index.html)",
        description="Trains a small model of each domain on the embedded demo data (about 10 "
        "minutes on 2 CPU cores, --quick about 3), samples it and writes OUT/index.html: image "
        "grid, audio with spectrograms, protein FASTA, infilled texts, loss curves and metrics. "
        "--toy runs the 2-D study instead: every continuous sampler with the exact denoiser of "
        "a Gaussian mixture (samples.png and table.md).",
        formatter_class=HelpFormatter,
    )
    demo.add_argument("--out", default="outputs/demo", help="folder for index.html (or --toy's)")
    demo.add_argument("--quick", action="store_true", help="about 3 minutes instead of 10")
    demo.add_argument("--domains", default="image,audio,protein,text", help="comma-separated")
    demo.add_argument(
        "--data", action="append", default=[], metavar="DOMAIN=PATH", help="a domain's data set"
    )
    demo.add_argument(
        "--steps", type=positive_int, help="training steps of every model (default: per domain)"
    )
    demo.add_argument("--toy", action="store_true", help="the 2-D toy sampler study")
    demo.add_argument("-n", "--n", type=positive_int, default=4000, help="--toy: samples each")
    demo.add_argument("--calls", default="10,20,50", help="--toy: network-call budgets")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.set_defaults(run=_demo)
    report_parser = sub.add_parser(
        "report",
        help="write a run folder's report.html (config, loss curve, samples, metrics)",
        description="Writes RUN_DIR/report.html, one self-contained page for a training or "
        "sampling folder: its command, seed, revision and configs, the loss curve, the samples "
        "and the metrics found there. Training commands write it when they finish.",
        formatter_class=HelpFormatter,
    )
    report_parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder holding run.json")
    report_parser.add_argument("--open", action="store_true", help="open it in a web browser")
    report_parser.set_defaults(run=_report)
    sub.add_parser(
        "studio",
        help="serve the studio: a local page to sample, keep, inpaint, refine and infill",
        add_help=False,  # `diffuse studio --help` is the studio's own
    )

    verbs = {}
    for verb, text in VERBS.items():
        verb_parser = sub.add_parser(verb, help=text, description=text)
        verbs[verb] = verb_parser.add_subparsers(dest="domain", required=True, metavar="DOMAIN")
    for domain in DOMAINS:
        try:
            module = importlib.import_module(f"diffuse.commands.{domain}")
        except ModuleNotFoundError as err:
            if err.name != f"diffuse.commands.{domain}":
                raise
            continue  # that domain has no commands yet
        module.register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status: 0, 1 (bad data or model), 2 (bad usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # before parsing: parsing itself may fail
    if not main_process():  # under torchrun rank 0 speaks for the run (errors still show)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    try:
        if argv[:1] == ["studio"] or argv[:2] == ["--debug", "studio"]:
            return _studio(argv[argv.index("studio") + 1 :])
        args, unknown = build_parser().parse_known_args(argv)
        if unknown:
            prog = " ".join(["diffuse", args.command, getattr(args, "domain", "")]).strip()
            raise UsageError(
                f"unknown arguments {' '.join(unknown)}, {prog}, expected the options of "
                f"`{prog} --help`"
            )
        args.argv = argv
        debug = args.debug
        return args.run(args) or 0  # a handler returns None or its exit status
    except KeyboardInterrupt:
        print("diffuse: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        return report(err, debug=debug)


if __name__ == "__main__":
    sys.exit(main())
