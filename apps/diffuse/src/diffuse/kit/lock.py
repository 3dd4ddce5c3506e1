"""The run folder of ``diffuse train|distill`` belongs to one command at a time."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

from diffuse.kit.record import main_process

Handler = Callable[[argparse.Namespace], Any]


def holding_out(run: Handler) -> Handler:
    """``run`` holding the lock of ``args.out`` (``diffcore.training.lock.run_lock``) for the
    whole command, so a second command into the same folder is refused (one line naming the
    holder's PID) before it loads any data. Under torchrun only rank 0 takes it, as ``train``
    does."""

    @functools.wraps(run)
    def locked(args: argparse.Namespace) -> Any:
        if not getattr(args, "out", None) or not main_process():
            return run(args)
        from diffcore.training.lock import run_lock

        with run_lock(args.out):
            return run(args)

    return locked
