"""Saving and loading without pickle: models as ``config.json`` + ``model.safetensors``, and
arbitrary nested training state as one safetensors file whose header carries the non-tensor
leaves as JSON.

Model convention: an ``nn.Module`` whose class has ``config_class: ClassVar[type]`` (a frozen
dataclass) and whose ``__init__(self, config)`` stores the config as ``self.config``
(the shape of diffusers' ``save_pretrained`` / ``from_pretrained``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
import types
import typing
from collections.abc import Iterator, Sequence
from math import inf
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# Formats that can only be read by unpickling, which runs arbitrary code: refused, never loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_STATE_KEY = "diffcore_state"  # safetensors metadata key holding the JSON tree of save_state

M = TypeVar("M", bound=nn.Module)


# Atomic writes

# A temporary's name carries its owner's PID, so that only the owner removes it while it runs
# (two runs sharing a folder once deleted each other's checkpoints in progress).
_TEMPORARY = re.compile(r"\.tmp-.*-pid(\d+)-[^-]*")


def temp_prefix(name: str) -> str:
    """The name prefix of this process's temporaries for ``name``: ``.tmp-<name>-pid<PID>-``."""
    return f".tmp-{name}-pid{os.getpid()}-"


def temporary_owner(path: str | os.PathLike) -> int | None:
    """The PID in a temporary's name (see ``temp_prefix``), or None for any other name."""
    match = _TEMPORARY.fullmatch(Path(path).name)
    return int(match[1]) if match else None


def pid_running(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate it on Windows
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # query limited info
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_temporaries(folder: str | os.PathLike, *, stale: bool = False) -> list[Path]:
    """Remove this process's temporaries in ``folder`` (``stale=True``: instead those whose
    owner no longer runs). Other names, and temporaries of running processes, are left alone.
    Returns what was removed."""
    root, removed = Path(folder), []
    for path in root.glob(".tmp-*") if root.is_dir() else ():
        pid = temporary_owner(path)
        if pid is None or (pid_running(pid) if stale else pid != os.getpid()):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries in ``folder`` left by processes that no longer run (a crash or a
    kill mid-write); return them."""
    return remove_temporaries(folder, stale=True)


@contextlib.contextmanager
def atomic_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``directory``; on success it replaces
    ``directory`` by a rename, on any error (or interrupt) it is removed.

    A reader therefore sees either the old complete directory or the new complete one.
    Temporary directories are named ``temp_prefix(name) + random`` so scanners skip them.
    """
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), dir=target.parent))
    try:
        yield tmp
        if target.exists():
            # rename() cannot replace a non-empty directory: move the old one aside first.
            old_prefix = temp_prefix(f"{target.name}-old")
            old = Path(tempfile.mkdtemp(prefix=old_prefix, dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(
            f"{path} is a pickle-based checkpoint ({path.suffix}); pickles are never loaded "
            "because unpickling runs arbitrary code. Convert it to safetensors in a trusted "
            "environment (safetensors.torch.save_file(state_dict, 'model.safetensors'))."
        )


# Module weights (tied tensors handled)


def _tie_groups(state: dict[str, Tensor]) -> list[list[str]]:
    """Names of state-dict entries grouped by identity of the tensor they view (tied weights
    appear once per name in ``state_dict()`` but are one tensor)."""
    groups: dict[tuple, list[str]] = {}
    for name, t in state.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"state dict entry {name!r} is a {type(t).__name__}, not a tensor")
        key = (
            t.untyped_storage().data_ptr() if t.numel() else id(t),
            t.storage_offset(),
            tuple(t.shape),
            t.stride(),
            t.dtype,
            t.device,
        )
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def save_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model.state_dict()`` to a safetensors file.

    Tied tensors (one tensor under several names) are stored once, under their first name;
    ``load_weights`` restores the others through the model's own ties. Tensors that merely
    overlap in memory are stored as separate copies (safetensors refuses shared memory).
    """
    path = Path(path)
    state = model.state_dict()
    flat: dict[str, Tensor] = {}
    seen_storage: set[int] = set()
    for names in _tie_groups(state):
        t = state[names[0]].detach()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen_storage:
            t = t.clone()  # a different view of a storage already written
        elif ptr is not None:
            seen_storage.add(ptr)
        flat[names[0]] = t.contiguous().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(flat, str(path), metadata={"format": "pt"})
    return path


def _names(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_weights(model: M, path: str | os.PathLike) -> M:
    """Load a safetensors file written by ``save_weights`` into ``model``, strictly.

    Raises ValueError naming missing or unexpected weights, mismatched shapes, and weights
    that are not finite.
    """
    path = Path(path)
    _refuse_pickle(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    loaded = load_file(str(path), device="cpu")
    expected = model.state_dict()
    present = set(loaded)
    missing = []
    for names in _tie_groups(expected):
        # A tied name is satisfied when any name of its tie group was stored.
        if not present.intersection(names):
            missing.extend(names)
    unexpected = [k for k in loaded if k not in expected]
    wrong = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in loaded.items()
        if k in expected and v.shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing weights: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected weights: {_names(unexpected)}")
    if wrong:
        problems.append(f"shape mismatches: {'; '.join(wrong[:10])}")
    if problems:
        raise ValueError(
            f"{path} does not match {type(model).__name__}: " + "; ".join(problems) + "."
        )
    broken = [k for k, v in loaded.items() if v.is_floating_point() and not v.isfinite().all()]
    if broken:
        raise ValueError(
            f"{path} holds NaN or infinite weights ({_names(broken)}): the training run that "
            "wrote it diverged; use an earlier checkpoint or train again with a lower lr"
        )
    model.load_state_dict(loaded, strict=False)  # strictness checked above, ties included
    return model


# save_pretrained / from_pretrained


def _config_of(model: nn.Module) -> Any:
    config = getattr(model, "config", None)
    if config is None or not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(
            f"{type(model).__name__} has no dataclass `config` attribute; save_pretrained needs "
            "a model built as `Model(config)` with `config_class` a dataclass"
        )
    return config


def save_pretrained(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``config.json`` (the dataclass plus ``"_class"``, the model's qualified class name,
    for information) and ``model.safetensors`` into ``directory``.

    A new directory appears atomically (written beside it, then renamed). An existing one keeps
    its other files (e.g. a tokenizer saved next to the model); each of the two files is
    replaced atomically, weights first.
    """
    config = _config_of(model)
    directory = Path(directory)
    payload = dataclasses.asdict(config)
    payload["_class"] = f"{type(model).__module__}.{type(model).__qualname__}"

    def write(into: Path) -> None:
        save_weights(model, into / WEIGHTS_NAME)
        (into / CONFIG_NAME).write_text(json.dumps(payload, indent=2) + "\n")

    if not directory.exists():
        with atomic_directory(directory) as tmp:
            write(tmp)
    else:
        with tempfile.TemporaryDirectory(
            prefix=temp_prefix(directory.name), dir=directory.parent
        ) as tmp:
            write(Path(tmp))
            for name in (WEIGHTS_NAME, CONFIG_NAME):
                os.replace(Path(tmp) / name, directory / name)
    return directory


def _is_tuple_type(hint: Any) -> bool:
    return hint is tuple or typing.get_origin(hint) is tuple


def _coerce(value: Any, hint: Any) -> Any:
    """JSON has no tuples: turn lists back into tuples where the annotation asks for one."""
    if not isinstance(value, list):
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if _is_tuple_type(arg) or typing.get_origin(arg) is list:
                return _coerce(value, arg)
        return value
    if _is_tuple_type(hint):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if args and len(args) == len(value):
            return tuple(_coerce(v, a) for v, a in zip(value, args, strict=True))
        return tuple(value)
    if origin is list and args:
        return [_coerce(v, args[0]) for v in value]
    return value


def _build_config(config_class: type, data: dict[str, Any], source: Path) -> Any:
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = [k for k in data if k not in fields and k != "_class"]
    if unknown:
        raise ValueError(
            f"{source} has keys that {config_class.__name__} does not know: {_names(unknown)}; "
            f"its fields are {_names(list(fields))}"
        )
    required = [
        n
        for n, f in fields.items()
        if f.init
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and n not in data
    ]
    if required:
        raise ValueError(f"{source} lacks required {config_class.__name__} fields: {required}")
    try:
        hints = typing.get_type_hints(config_class)
    except Exception:  # unresolvable forward references: fall back to the defaults' types
        hints = {}
    kwargs = {}
    for name, value in data.items():
        if name == "_class":
            continue
        f = fields[name]
        hint = hints.get(name)
        if hint is None and isinstance(f.default, tuple):
            hint = tuple
        kwargs[name] = _coerce(value, hint) if hint is not None else value
        if hint is not None and not _matches(kwargs[name], hint):
            raise ValueError(
                f"{source}: {config_class.__name__}.{name} is {value!r}; expected {_hint_name(hint)}"
            )
    try:
        return config_class(**kwargs)
    except (ValueError, TypeError) as err:  # the config's own checks, which cannot name the file
        raise ValueError(f"{source}: {err}") from err


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value (tuples restored) fits a field's annotation. Only the shapes JSON
    can hold are checked; any other annotation accepts the value (its config checks it)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:  # True is an int to Python, not to a config
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # JSON's NaN and Infinity are no setting
        return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < inf
    if hint is str:
        return isinstance(value, str)
    if _is_tuple_type(hint):
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return not args or (len(args) == len(value) and all(map(_matches, value, args)))
    if origin in (list, dict) or hint in (list, dict):
        return isinstance(value, origin or hint)
    return True


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def from_pretrained(
    cls: type[M],
    directory: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> M:
    """Rebuild ``cls(cls.config_class(**config.json))`` and load ``model.safetensors`` strictly.

    dtype: cast floating-point weights after loading (None keeps the stored dtypes).
    Pickle files (``.bin/.pt/.pth/.ckpt/.pkl``) are refused with a ValueError.
    """
    config_class = getattr(cls, "config_class", None)
    if not (isinstance(config_class, type) and dataclasses.is_dataclass(config_class)):
        raise TypeError(
            f"{cls.__name__}.config_class must be a dataclass type, got {config_class!r}"
        )
    directory = Path(directory)
    if directory.is_file():
        _refuse_pickle(directory)
        raise ValueError(f"{directory} is a file; expected a directory written by save_pretrained")
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory {directory} does not exist")
    weights, config_path = directory / WEIGHTS_NAME, directory / CONFIG_NAME
    if not weights.is_file():
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise ValueError(
                f"{directory} holds only pickle-based weights ({', '.join(pickles)}); pickles are "
                f"never loaded because unpickling runs arbitrary code. Convert them to "
                f"safetensors ({WEIGHTS_NAME}) in a trusted environment."
            )
        raise FileNotFoundError(f"{directory} has no {WEIGHTS_NAME}")
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory} has no {CONFIG_NAME}")
    data = _json_object(config_path)
    model = cls(_build_config(config_class, data, config_path))
    load_weights(model, weights)
    return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)


def _json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ValueError naming the file when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


SAMPLING_NAME = "sampling.json"
_SAMPLING_KEYS = ("sampler", "steps", "guidance", "options")


def write_sampling(
    directory: str | os.PathLike, defaults: dict[str, Any], *, origin: dict[str, Any] | None = None
) -> Path:
    """Write a model folder's default sampling settings (``sampling.json``): the keywords
    ``sampler``, ``steps``, ``guidance`` and ``options`` of a pipeline call, used when a call
    leaves them out, plus ``origin`` (how the model came to need them, for information).
    A distilled model needs this: it samples well only with the steps it was distilled for."""
    unknown = set(defaults) - set(_SAMPLING_KEYS)
    if unknown:
        raise ValueError(f"unknown sampling keys {sorted(unknown)}; expected {_SAMPLING_KEYS}")
    path = Path(directory) / SAMPLING_NAME
    payload = {**defaults, **({"origin": origin} if origin else {})}
    tmp = path.with_name(f".{SAMPLING_NAME}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_sampling(directory: str | os.PathLike) -> dict[str, Any]:
    """A model folder's default sampling settings ({} when it has no ``sampling.json``)."""
    path = Path(directory) / SAMPLING_NAME
    if not path.is_file():
        return {}
    data = _json_object(path)
    unknown = set(data) - {*_SAMPLING_KEYS, "origin"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; expected {_SAMPLING_KEYS}")
    return {k: v for k, v in data.items() if k in _SAMPLING_KEYS}


# Nested training state


def _encode(obj: Any, tensors: dict[str, Tensor], where: str) -> Any:
    """JSON tree for ``obj``; tensors go to ``tensors`` and are referenced by key."""
    if isinstance(obj, Tensor):
        key = str(len(tensors))
        t = obj.detach().cpu().contiguous()
        # safetensors refuses tensors sharing memory, so copy any that do.
        if t.numel() and any(
            u.numel() and u.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()
            for u in tensors.values()
        ):
            t = t.clone()
        tensors[key] = t
        return {"__tensor__": key}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, tensors, f"{where}[{k!r}]") for k, v in obj.items()}
        # Non-string keys (an optimizer's parameter ids) would become strings in JSON.
        return {
            "__dict__": [
                [_encode(k, tensors, f"{where} key"), _encode(v, tensors, f"{where}[{k!r}]")]
                for k, v in obj.items()
            ]
        }
    raise TypeError(
        f"save_state cannot store {where} of type {type(obj).__name__}; expected tensors, "
        "None, bool, int, float, str, and lists, tuples or dicts of them"
    )


def _decode(node: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if isinstance(node, dict):
        if "__tensor__" in node:
            return tensors[node["__tensor__"]]
        if "__tuple__" in node:
            return tuple(_decode(v, tensors) for v in node["__tuple__"])
        if "__dict__" in node:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in node["__dict__"]}
        return {k: _decode(v, tensors) for k, v in node.items()}
    return node


def save_state(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Store a nested dict (optimizer/scheduler state dicts, RNG states, counters) in one
    safetensors file: tensors as entries, everything else as JSON in the file's header.

    The file is written beside ``path`` and renamed into place, so it is never half-written.
    """
    if not isinstance(state, dict):
        raise TypeError(f"save_state expects a dict, got {type(state).__name__}")
    tensors: dict[str, Tensor] = {}
    tree = _encode(state, tensors, "state")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), dir=path.parent)
    os.close(fd)
    try:
        meta = {"format": "pt", _STATE_KEY: json.dumps({"version": 1, "tree": tree})}
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_state(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Inverse of ``save_state``: tensors bit-identical (on ``device``), tuples, dicts with
    non-string keys, ints, floats, strings and None restored as they were."""
    path = Path(path)
    _refuse_pickle(path)
    if not path.is_file():
        raise FileNotFoundError(f"state file {path} does not exist")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        if _STATE_KEY not in meta:
            raise ValueError(f"{path} was not written by diffcore.io.save_state (no state header)")
        tensors = {k: f.get_tensor(k).to(device) for k in f.keys()}  # noqa: SIM118
    return _decode(json.loads(meta[_STATE_KEY])["tree"], tensors)


def find_files(
    sources: Sequence[str | os.PathLike], suffixes: Sequence[str], *, what: str
) -> list[Path]:
    """The files named by ``sources``: a file as given, a folder searched recursively for the
    ``suffixes`` (lower case, with the dot; sorted). ``what`` names them in errors ("image",
    "text"...)."""
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted(p for p in source.rglob("*") if p.suffix.lower() in suffixes)
            if not found:
                raise ValueError(f"folder {source} holds no {what} files ({', '.join(suffixes)})")
            files.extend(found)
        elif source.is_file():
            files.append(source)
        else:
            raise FileNotFoundError(f"{what} source {source} does not exist")
    return files


# Data sources: a local path, or a Hub data set only when named as one

HUB_PREFIX = "hub:"
# What a Hugging Face data set id looks like: "name" or "owner/name".
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def hub_name(source: str | os.PathLike) -> str | None:
    """The data set id of a ``hub:NAME`` source (``"hub:fashion_mnist"`` -> ``"fashion_mnist"``),
    else None. Only this prefix sends a source to the Hub, so a mistyped local path never
    turns into a network request."""
    text = str(source)
    if not text.startswith(HUB_PREFIX):
        return None
    name = text[len(HUB_PREFIX) :]
    return name if _HUB_ID.fullmatch(name) else None


def missing_source(source: str | os.PathLike) -> str | None:
    """A one-line error when ``source`` is neither an existing path nor ``hub:NAME``, else None.
    A bare name that could be a Hub id gets the ``hub:`` spelling suggested."""
    text = str(source)
    if Path(text).exists() or hub_name(text) is not None:
        return None
    if text.startswith(HUB_PREFIX):
        return f"{text} names no Hub data set (expected hub:NAME or hub:OWNER/NAME)"
    hint = f" (for a Hugging Face Hub data set write hub:{text})" if _HUB_ID.fullmatch(text) else ""
    return f"{text} does not exist{hint}"
