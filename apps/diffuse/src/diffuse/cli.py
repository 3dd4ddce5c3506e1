"""The `diffuse` command: ``diffuse <verb> <domain> [options]`` plus ``diffuse demo``.

Each domain's subcommands live in ``diffuse.commands.<domain>`` and are attached by its
``register(verbs)``, which adds parsers under the verbs it supports (``verbs["train"]`` etc.).
Domain modules import their heavy packages inside their handlers, so ``diffuse --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

VERBS = {
    "train": "train a model",
    "sample": "sample from a trained model",
    "edit": "edit existing data with a trained model (img2img, inpainting, infilling)",
    "eval": "evaluate samples or a trained model",
}
DOMAINS = ("image", "text", "audio", "protein")


def _demo(args: argparse.Namespace) -> int:
    from diffuse.demo import run_demo

    calls = tuple(int(c) for c in args.calls.split(","))
    print(run_demo(Path(args.out), n=args.n, calls=calls, seed=args.seed))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffuse", description="Train, sample and evaluate diffusion models across domains."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="2-D toy study: every sampler with the exact denoiser of a Gaussian mixture",
        description="Samples a 2-D Gaussian mixture with every continuous sampler, fed the exact "
        "denoiser, and prints each sampler's distance to exact samples; writes a PNG.",
    )
    demo.add_argument("--out", default="outputs/demo", help="folder for samples.png and table.md")
    demo.add_argument("--n", type=int, default=4000, help="samples per sampler")
    demo.add_argument("--calls", default="10,20,50", help="network-call budgets, comma-separated")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)

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
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
