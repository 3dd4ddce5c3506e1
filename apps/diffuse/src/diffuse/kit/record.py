"""The run record: ``run.json`` beside every command's outputs, written by one function, with
what it takes to repeat and to compare the run: the arguments, the resolved configs, the seed,
the package versions, the git revision and the machine."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("diffcore", "diffimage", "difftext", "diffaudio", "diffprotein", "diffuse", "torch")


def main_process() -> bool:
    """Whether this process writes the command's files (run records, previews, reports): always,
    except under torchrun on the ranks other than 0 (RANK set to anything but "0")."""
    return os.environ.get("RANK", "0") in ("", "0")


def resolve_device(name: str | None) -> str:
    """``name`` as given, or for "auto" / None: "cuda" when available, else "cpu"."""
    if name and name != "auto":
        return name
    import torch  # late: `diffuse --help` should not pay for importing torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def git_revision() -> dict[str, Any]:
    """The checkout holding this code: its HEAD commit and whether tracked files differ from it
    (None outside a git checkout)."""
    here = Path(__file__).parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=here, capture_output=True, text=True, check=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    changes = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit or None, "dirty": None if changes is None else bool(changes)}


def versions() -> dict[str, str | None]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine() -> dict[str, Any]:
    """Platform, CPU model and the flags that decide CPU speed (AVX-512, AVX512-BF16, AMX),
    torch's threads and the CUDA device."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    first = cpuinfo.split("\n\n")[0].splitlines()  # the first processor's block
    fields = dict((k.strip(), v.strip()) for k, v in (x.split(":", 1) for x in first if ":" in x))
    if "model name" in fields:
        info["cpu"] = fields["model name"]
    if "flags" in fields:
        flags = set(fields["flags"].split())
        info["avx2"] = "avx2" in flags
        info["avx512"] = "avx512f" in flags
        info["avx512_bf16"] = "avx512_bf16" in flags
        info["amx"] = "amx_tile" in flags
    if "torch" in sys.modules:  # only where the command has loaded it
        import torch

        info["torch_threads"] = torch.get_num_threads()
        cuda = torch.cuda.is_available()
        info["cuda_device"] = torch.cuda.get_device_name() if cuda else None
    return info


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def write_run(target: str | Path, args: Any, *, beside: bool = False, **resolved: Any) -> Path:
    """Write the run record and return its path: ``target/run.json`` for a folder of outputs,
    or with ``beside`` ``<target stem>.run.json`` next to an output file. ``resolved``: the
    configs the command resolved (dataclasses are written as dicts) and other facts of the run.
    Under torchrun only rank 0 writes it (the others return the path).
    """
    target = Path(target)
    path = target.with_suffix(".run.json") if beside else target / "run.json"
    if not main_process():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    arguments = {k: v for k, v in vars(args).items() if k not in ("run", "debug", "argv")}
    record = {
        "command": " ".join(["diffuse", *getattr(args, "argv", [])]),
        "arguments": arguments,
        "seed": arguments.get("seed"),
        **{k: _plain(v) for k, v in resolved.items()},
        "git": git_revision(),
        "versions": versions(),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path


def reporting(run: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``run`` (a training command's handler), then, on rank 0 once it succeeded, the run
    folder's ``report.html`` (:func:`diffuse.report.write_report`), its path printed."""

    @functools.wraps(run)
    def reported(args: Any) -> Any:
        status = run(args)
        out = getattr(args, "out", None)
        if status or not out or not main_process() or not (Path(out) / "run.json").is_file():
            return status
        from diffuse.report import write_report  # late: it imports diffuse.kit

        try:
            print(f"report: {write_report(out)}")
        except OSError as err:  # the model is saved: a report that cannot be written is no failure
            print(f"diffuse: warning: no report written ({err})", file=sys.stderr)
        return status

    return reported
