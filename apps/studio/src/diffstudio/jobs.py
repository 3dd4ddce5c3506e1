"""One generation at a time: a bounded queue in front of a single worker thread.

A request becomes a ``Job`` with an id at once (or ``QueueFull`` when ``max_queued`` jobs
wait already: the server answers 503 and nothing is dropped silently). The worker runs the
jobs in order; a running job reports its steps and a preview. Finished jobs are kept for
``max_kept`` more jobs, so memory holds at most max_queued + 1 + max_kept jobs.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Work = Callable[["Job"], dict[str, Any]]


class QueueFull(RuntimeError):
    """The queue holds its bound of waiting jobs."""


@dataclass
class Job:
    id: str
    kind: str
    status: str = "queued"  # queued -> running -> done | error
    step: int = 0
    total: int = 0
    preview: list[str] | str | None = None  # the latest per-step estimate, as the page shows it
    result: dict[str, Any] | None = None
    error: str | None = None
    created: float = field(default_factory=time.monotonic)

    def report(self, step: int, total: int, preview: Any = None) -> None:
        self.step, self.total = step, total
        if preview is not None:
            self.preview = preview

    def public(self, position: int | None = None) -> dict[str, Any]:
        out = {"id": self.id, "kind": self.kind, "status": self.status, "step": self.step}
        out["total"] = self.total
        if position is not None:
            out["position"] = position
        if self.status == "running" and self.preview is not None:
            out["preview"] = self.preview
        if self.result is not None:
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error
        return out


class JobQueue:
    """A bounded FIFO of jobs and the one thread that runs them."""

    def __init__(self, *, max_queued: int = 64, max_kept: int = 64) -> None:
        if max_queued < 1 or max_kept < 1:
            raise ValueError("max_queued and max_kept must be at least 1")
        self.max_queued, self.max_kept = max_queued, max_kept
        self._waiting: queue.Queue[tuple[Job, Work] | None] = queue.Queue(maxsize=max_queued)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="studio-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self._waiting.put(None)  # after the jobs already waiting
            self._thread.join(timeout)
            self._thread = None

    def submit(self, kind: str, work: Work) -> Job:
        with self._lock:
            job = Job(f"{kind}-{next(self._ids)}", kind)
            try:
                self._waiting.put_nowait((job, work))
            except queue.Full:
                raise QueueFull(
                    f"the studio's queue holds {self.max_queued} jobs already; try again soon"
                ) from None
            self._jobs[job.id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """How many jobs run or wait before ``job`` (0: it is running or done)."""
        with self._lock:
            ahead = [j for j in self._jobs.values() if j.status in ("queued", "running")]
        return ahead.index(job) if job in ahead else 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def _run(self) -> None:
        while (item := self._waiting.get()) is not None:
            job, work = item
            job.status = "running"
            try:
                job.result = work(job)
                job.status = "done"
            except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
                job.error, job.status = str(err), "error"
            except Exception as err:  # the worker outlives a failing job
                traceback.print_exc()
                job.error, job.status = f"{type(err).__name__}: {err}", "error"
            job.preview = None
            self._forget_old()

    def _forget_old(self) -> None:
        with self._lock:
            finished = [k for k, j in self._jobs.items() if j.status in ("done", "error")]
            for key in finished[: max(0, len(finished) - self.max_kept)]:
                del self._jobs[key]
