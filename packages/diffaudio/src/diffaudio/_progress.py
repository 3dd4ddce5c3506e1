"""A one-line progress counter on stderr (``tqdm`` is not among diffaudio's dependencies)."""

from __future__ import annotations

import sys
import time


class Progress:
    """``desc: done/total`` redrawn in place at most every 0.2 s; silent when disabled."""

    def __init__(self, total: int | None, desc: str, *, enabled: bool = True) -> None:
        self.total, self.desc, self.enabled = total, desc, enabled
        self.done, self._shown = 0, 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._shown > 0.2 or self.done == self.total):
            self._shown = now
            of = f"/{self.total}" if self.total else ""
            print(f"\r{self.desc}: {self.done}{of}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.done:
            print(file=sys.stderr, flush=True)
