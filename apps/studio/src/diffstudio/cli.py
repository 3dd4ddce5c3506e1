"""``diffuse studio`` (also ``diffuse-studio``): serve the studio page on this machine.

It binds 127.0.0.1 unless ``--host`` says otherwise: the page runs models and writes files, so
it is for the person at this machine; another host is a deliberate choice, with a warning.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def build_parser(prog: str = "diffuse studio") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve the studio: a local page to sample, keep and re-sample, inpaint, "
        "refine and infill with trained models.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="DIR",
        help="a model folder (image or text) inside a --root; repeat for more",
    )
    parser.add_argument(
        "--root",
        action="append",
        default=None,
        metavar="DIR",
        help="a folder the page may load models from (repeatable; default: the current folder)",
    )
    parser.add_argument(
        "--out", default=None, help="folder for saved results (default: ROOT/studio-outputs)"
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to bind")
    parser.add_argument("--device", default="cpu", help="device the models run on")
    parser.add_argument("--max-upload-mb", type=float, default=4.0, help="largest request body")
    parser.add_argument("--max-queued", type=int, default=64, help="jobs waiting before 503")
    return parser


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_app(args: argparse.Namespace):
    from diffstudio.paths import Models
    from diffstudio.server import Limits, create_app

    models = Models(args.root or ["."], device=args.device)
    for folder in args.model:
        models.add(folder, from_page=False)
    limits = Limits(max_upload=int(args.max_upload_mb * 1024 * 1024), max_queued=args.max_queued)
    return create_app(models, out_dir=args.out, limits=limits)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    app = make_app(args)
    if not is_loopback(args.host):
        print(
            f"diffuse studio: warning: binding {args.host}; anyone who reaches this address can "
            "run the models and write into the output folder",
            file=sys.stderr,
        )
    print(f"diffuse studio: http://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "diffuse-studio") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
