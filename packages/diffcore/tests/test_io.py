"""diffcore.io: save_pretrained / from_pretrained and pickle-free nested state files."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from diffcore.io import (
    atomic_directory,
    from_pretrained,
    load_state,
    load_weights,
    save_pretrained,
    save_state,
    save_weights,
)


@dataclass(frozen=True)
class MLPConfig:
    dim: int = 3
    hidden: tuple[int, ...] = (8, 8)
    scale: float | None = None
    name: str = "mlp"
    pairs: tuple[tuple[int, int], ...] = ((1, 2),)


class MLP(nn.Module):
    config_class: ClassVar[type] = MLPConfig

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        sizes = (config.dim, *config.hidden, config.dim)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:], strict=False))
        self.register_buffer("counter", torch.arange(3))


@dataclass(frozen=True)
class TiedConfig:
    vocab: int = 11
    dim: int = 4


class TiedLM(nn.Module):
    """Embedding and output head share one weight (the usual language-model tie)."""

    config_class: ClassVar[type] = TiedConfig

    def __init__(self, config: TiedConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab, config.dim)
        self.head = nn.Linear(config.dim, config.vocab, bias=False)
        self.head.weight = self.embed.weight


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model


def test_save_then_load_restores_config_and_weights_exactly(tmp_path):
    model = _randomize(MLP(MLPConfig(dim=5, hidden=(7, 6), scale=0.5, pairs=((3, 4), (5, 6)))))
    out = save_pretrained(model, tmp_path / "m")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    written = json.loads((out / "config.json").read_text())
    assert written["_class"].endswith("MLP") and written["hidden"] == [7, 6]

    loaded = from_pretrained(MLP, out)
    assert loaded.config == model.config
    # JSON lists back to the annotated tuples, nested ones included.
    assert isinstance(loaded.config.hidden, tuple) and isinstance(loaded.config.pairs[0], tuple)
    for (k, a), (k2, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and a.dtype == b.dtype and torch.equal(a, b)


def test_from_pretrained_casts_floating_weights_to_the_requested_dtype(tmp_path):
    model = _randomize(MLP(MLPConfig()))
    loaded = from_pretrained(MLP, save_pretrained(model, tmp_path / "m"), dtype=torch.float64)
    assert loaded.layers[0].weight.dtype == torch.float64
    assert loaded.counter.dtype == torch.int64  # integer buffers are left alone
    assert torch.equal(loaded.layers[0].weight, model.layers[0].weight.double())


def test_tied_weights_are_stored_once_and_stay_tied_after_loading(tmp_path):
    model = _randomize(TiedLM(TiedConfig()))
    out = save_pretrained(model, tmp_path / "tied")
    assert list(load_file(out / "model.safetensors")) == ["embed.weight"]
    loaded = from_pretrained(TiedLM, out)
    assert loaded.head.weight is loaded.embed.weight
    assert torch.equal(loaded.head.weight, model.embed.weight)


def test_weights_that_only_overlap_in_memory_are_saved_as_copies(tmp_path):
    class Views(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            base = torch.arange(6.0)
            self.register_buffer("a", base[:4])
            self.register_buffer("b", base[2:])

    path = save_weights(Views(), tmp_path / "v.safetensors")
    stored = load_file(path)
    assert torch.equal(stored["a"], torch.arange(4.0)) and torch.equal(
        stored["b"], torch.arange(2.0, 6.0)
    )


def test_resaving_into_an_existing_directory_keeps_its_other_files(tmp_path):
    out = save_pretrained(_randomize(MLP(MLPConfig()), 0), tmp_path / "m")
    (out / "tokenizer.json").write_text("{}")
    newer = _randomize(MLP(MLPConfig()), 1)
    save_pretrained(newer, out)
    assert (out / "tokenizer.json").exists()
    assert torch.equal(from_pretrained(MLP, out).layers[0].weight, newer.layers[0].weight)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary directory left behind


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".ckpt"])
def test_pickle_files_are_refused_with_a_conversion_hint(tmp_path, suffix):
    directory = tmp_path / "legacy"
    directory.mkdir()
    (directory / f"pytorch_model{suffix}").write_bytes(b"not even opened")
    (directory / "config.json").write_text("{}")
    for target in (directory, directory / f"pytorch_model{suffix}"):
        with pytest.raises(ValueError, match="pickle") as info:
            from_pretrained(MLP, target)
        assert "safetensors" in str(info.value)
    with pytest.raises(ValueError, match="pickle"):
        load_state(directory / f"pytorch_model{suffix}")


def test_unknown_config_key_is_named_in_the_error(tmp_path):
    out = save_pretrained(MLP(MLPConfig()), tmp_path / "m")
    data = json.loads((out / "config.json").read_text())
    data["n_heads"] = 4
    (out / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="n_heads"):
        from_pretrained(MLP, out)


def test_missing_and_unexpected_weights_are_named(tmp_path):
    out = save_pretrained(MLP(MLPConfig()), tmp_path / "m")
    weights = load_file(out / "model.safetensors")
    del weights["layers.1.bias"]
    weights["extra.weight"] = torch.zeros(2)
    save_file(weights, out / "model.safetensors")
    with pytest.raises(ValueError) as info:
        from_pretrained(MLP, out)
    assert "missing weights: layers.1.bias" in str(info.value)
    assert "unexpected weights: extra.weight" in str(info.value)


def test_shape_mismatch_is_named(tmp_path):
    out = save_pretrained(MLP(MLPConfig(hidden=(8, 8))), tmp_path / "m")
    with pytest.raises(ValueError, match=r"layers\.0\.weight: file \(8, 3\) vs model \(9, 3\)"):
        load_weights(MLP(MLPConfig(hidden=(9, 8))), out / "model.safetensors")


def test_missing_directory_and_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_pretrained(MLP, tmp_path / "nowhere")
    out = save_pretrained(MLP(MLPConfig()), tmp_path / "m")
    (out / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_pretrained(MLP, out)
    with pytest.raises(TypeError, match="config_class"):
        from_pretrained(nn.Linear, out)


def test_atomic_directory_leaves_the_old_version_when_writing_fails(tmp_path):
    target = tmp_path / "d"
    with atomic_directory(target) as tmp:
        (tmp / "f").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "f").write_text("half")
        raise RuntimeError("crash mid-write")
    assert (target / "f").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def _assert_same(a, b, where="state"):
    """Structural equality that also checks types, dtypes and tensor bits."""
    assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


def test_save_state_round_trip_is_exact(tmp_path):
    base = torch.randn(4, 5)
    state = {
        "step": 12,
        "lr": 3e-4,
        "odd_floats": [float("nan"), float("inf"), -0.0],
        "name": "run",
        "nothing": None,
        "flag": True,
        "betas": (0.9, 0.999),
        "by_id": {0: {"exp_avg": torch.randn(3)}, 1: {"step": torch.tensor(7.0)}},
        "tuple_keys": {(1, "a"): "x", "__tensor__": "not a tensor reference"},
        "views": [base, base[1:3], base.t()],  # share memory: saved as independent copies
        "dtypes": [
            torch.randn(2, 2, dtype=torch.bfloat16),
            torch.tensor([True, False]),
            torch.empty(0, 3),
            torch.tensor(5, dtype=torch.int64),
        ],
        "rng": torch.get_rng_state(),
        "empty": {},
    }
    path = save_state(state, tmp_path / "state.safetensors")
    _assert_same(state, load_state(path))
    with safe_open(str(path), framework="pt") as f:  # a real safetensors file, no pickle
        assert len(list(f.keys())) == 10


def test_save_state_restores_an_optimizer_exactly(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    for _ in range(2):
        model(torch.randn(4, 3)).square().mean().backward()
        opt.step()
    save_state({"optimizer": opt.state_dict()}, tmp_path / "opt.safetensors")
    clone = nn.Linear(3, 2)
    clone.load_state_dict(model.state_dict())
    opt2 = torch.optim.AdamW(clone.parameters(), lr=0.1)
    opt2.load_state_dict(load_state(tmp_path / "opt.safetensors")["optimizer"])
    x = torch.randn(4, 3)
    for m, o in ((model, opt), (clone, opt2)):
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()
    assert torch.equal(model.weight, clone.weight) and torch.equal(model.bias, clone.bias)


def test_save_state_names_an_unsupported_value(tmp_path):
    with pytest.raises(TypeError, match=r"state\['sched'\]\['fn'\]"):
        save_state({"sched": {"fn": print}}, tmp_path / "s.safetensors")
    assert list(tmp_path.iterdir()) == []
