"""diffcore.training: the one training loop (exact resume, atomic checkpoints, accumulation,
EMA, mixed precision, interrupts) on a tiny MLP that runs in milliseconds per step."""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import shutil
import signal
import subprocess
import sys
import warnings
from dataclasses import dataclass
from subprocess import PIPE
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from diffcore.io import from_pretrained, load_state
from diffcore.training import (
    EMA,
    BatchStream,
    Position,
    TrainConfig,
    default_ema_decay,
    dist_info,
    drop_condition,
    epoch_permutation,
    latest_checkpoint,
    list_checkpoints,
    loop,
    resolve_precision,
    train,
)
from diffcore.training.checkpoint import checkpoint_damage
from diffcore.training.history import TRAIN_LOG, read_log, trim_log
from diffcore.training.lock import RunLockedError


@dataclass(frozen=True)
class MLPConfig:
    dim: int = 4
    hidden: int = 16


class MLP(nn.Module):
    config_class: ClassVar[type] = MLPConfig

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        self.net = nn.Sequential(
            nn.Linear(config.dim, config.hidden), nn.SiLU(), nn.Linear(config.hidden, config.dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_model() -> MLP:
    torch.manual_seed(0)
    return MLP(MLPConfig())


def make_data(n: int = 36) -> torch.Tensor:
    """(n, 4) samples; 36 is not a multiple of the batch, so epochs drop a partial batch."""
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(1))


def denoising_loss(model, batch, generator):
    """x0-prediction at a random noise level: all randomness comes from the loop's generator."""
    noise = torch.randn(batch.shape, generator=generator, device=batch.device)
    sigma = torch.rand(batch.shape[0], 1, generator=generator, device=batch.device)
    return F.mse_loss(model(batch + sigma * noise), batch)


def regression_loss(model, batch, generator):
    """Deterministic loss (no noise), so differently batched runs can be compared."""
    return F.mse_loss(model(batch), 0.5 * batch.flip(-1))


BASE = TrainConfig(
    steps=8, batch_size=8, lr=1e-2, grad_accum=2, ema_decay=0.9, checkpoint_every=3, log_every=2
)


def run(tmp_path, name, loss_fn=denoising_loss, config=BASE, model=None, **kw):
    model = make_model() if model is None else model
    result = train(
        model, loss_fn, make_data(), config, out_dir=tmp_path / name, progress=False, **kw
    )
    return model, result


def interrupt_at(call: int, loss_fn=denoising_loss):
    """A loss that raises KeyboardInterrupt on its ``call``-th invocation (1-based)."""
    calls = {"n": 0}

    def loss(model, batch, generator):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return loss_fn(model, batch, generator)

    return loss


def assert_models_equal(a: nn.Module, b: nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_interrupted_and_resumed_run_matches_the_uninterrupted_run_bit_for_bit(tmp_path):
    full_model, full = run(tmp_path, "full")
    # Interrupt on the second micro-batch of step 6: step 6 has already drawn noise and
    # accumulated a gradient, none of which may leak into the checkpoint of step 5.
    part_model = make_model()
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "part", interrupt_at(2 * 5 + 2), model=part_model)
    assert [s for s, _ in list_checkpoints(tmp_path / "part")] == [3, 5]
    resumed_model, resumed = run(tmp_path, "part", model=make_model())

    assert resumed.step == full.step == 8
    assert resumed.loss == full.loss
    assert_models_equal(resumed_model, full_model)
    for name in ("ema.safetensors", "model.safetensors"):
        a, b = load_file(full.checkpoint / name), load_file(resumed.checkpoint / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert_models_equal(
        from_pretrained(MLP, resumed.final_model), from_pretrained(MLP, full.final_model)
    )
    # Rows average the steps since the previous row of the same call, so the first resumed
    # row (step 6) covers one step; later rows coincide.
    assert [r.step for r in resumed.log] == [6, 8] and resumed.log[-1] == full.log[-1]


def test_each_log_row_is_appended_to_train_log_jsonl_with_the_seconds_since_the_start(tmp_path):
    _, result = run(tmp_path, "r")
    rows = read_log(tmp_path / "r" / TRAIN_LOG)
    assert [(r["step"], r["loss"], r["lr"]) for r in rows] == [tuple(x) for x in result.log]
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    seconds = [r["seconds"] for r in rows]
    assert seconds == sorted(seconds) and seconds[0] >= 0


def test_a_resumed_run_drops_the_log_rows_past_its_checkpoint(tmp_path):
    _, full = run(tmp_path, "full")
    run(tmp_path, "part")
    # A kill after the row of step 8 but before its checkpoint: the run resumes from step 6.
    shutil.rmtree(dict(list_checkpoints(tmp_path / "part"))[8])
    log = tmp_path / "part" / TRAIN_LOG
    with log.open("a") as f:
        f.write('{"step": 9, "loss": 1.0')  # a torn last line
    kept = read_log(log)[:3]
    run(tmp_path, "part")
    rows = read_log(log)
    assert rows[:3] == kept  # steps 2, 4, 6; the rows of steps 8 and 9 are gone
    assert [(r["step"], r["loss"], r["lr"]) for r in rows] == [tuple(x) for x in full.log]
    assert rows[3]["seconds"] >= rows[2]["seconds"]  # the clock goes on from the kept rows


def test_trimming_a_log_keeps_the_rows_up_to_a_step_and_returns_their_last_seconds(tmp_path):
    log = tmp_path / TRAIN_LOG
    assert trim_log(log, 5) == 0.0 and not log.exists()
    log.write_text('{"step": 2, "seconds": 1.5}\n{"step": 4, "seconds": 3.0}\n[1]\n')
    assert trim_log(log, 3) == 1.5
    assert log.read_text() == '{"step": 2, "seconds": 1.5}\n'
    assert trim_log(log, 0) == 0.0 and log.read_text() == ""


def test_a_deadline_stops_after_the_step_that_passes_it_and_the_run_resumes_exactly(
    tmp_path, monkeypatch
):
    full_model, full = run(tmp_path, "full")
    clock = {"now": 1_000.0}  # one second per loss call: two micro-batches a step

    def ticking_loss(model, batch, generator):
        clock["now"] += 1.0
        return denoising_loss(model, batch, generator)

    monkeypatch.setattr(loop, "time", type("Clock", (), {"time": lambda: clock["now"]}))
    cut = dataclasses.replace(BASE, deadline=1_005.5)  # passed during step 3
    _, part = run(tmp_path, "part", ticking_loss, config=cut)
    assert (part.step, part.stopped_early) == (3, True)
    assert [s for s, _ in list_checkpoints(tmp_path / "part")] == [3]
    assert part.final_model.is_dir() and [r.step for r in part.log] == [2, 3]
    resumed_model, resumed = run(tmp_path, "part", config=BASE)  # no deadline: on to step 8
    assert (resumed.step, resumed.stopped_early) == (8, False)
    assert_models_equal(resumed_model, full_model)


def test_the_default_ema_window_is_a_tenth_of_the_run():
    assert default_ema_decay(3000) == pytest.approx(1 - 1 / 300)
    assert default_ema_decay(400) ** 400 < 1e-4  # the random start has faded from the average
    assert default_ema_decay(10_000_000) == 0.9999
    assert default_ema_decay(10) is None  # a window of one step: no averaging
    with pytest.raises(ValueError, match="steps"):
        default_ema_decay(0)


def test_auto_precision_is_fp32_on_cpu_and_explicit_choices_are_kept():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8", "cpu")


def test_keyboard_interrupt_saves_the_last_completed_step_and_reraises(tmp_path):
    model = make_model()
    config = dataclasses.replace(BASE, checkpoint_every=100)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "r", interrupt_at(2 * 4 + 1), config=config, model=model)
    ((step, path),) = list_checkpoints(tmp_path / "r")
    assert step == 4
    saved = load_file(path / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    state = load_state(path / "training_state.safetensors")
    # 8 micro-batches of 8 from 36 samples (4 per epoch): all of epoch 0, 32 samples of epoch 1.
    assert (state["epoch"], state["offset"], state["step"]) == (1, 32, 4)


def test_ctrl_c_during_the_optimizer_update_takes_effect_once_the_step_is_complete(tmp_path):
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # a shell's background job starts with SIGINT ignored, so Ctrl-C cannot reach the loop
        pytest.skip("SIGINT is ignored in this process (started as a background job)")
    steps = {"n": 0}

    def press_ctrl_c_on_third_update(optimizer, args, kwargs):
        steps["n"] += 1
        if steps["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)  # lands inside the update, must wait for its end

    model = make_model()
    handle = register_optimizer_step_pre_hook(press_ctrl_c_on_third_update)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(
                tmp_path,
                "part",
                model=model,
                config=dataclasses.replace(BASE, checkpoint_every=100),
            )
    finally:
        handle.remove()
    assert [s for s, _ in list_checkpoints(tmp_path / "part")] == [3]
    resumed, _ = run(tmp_path, "part", model=make_model())
    full, _ = run(tmp_path, "full")
    assert_models_equal(resumed, full)


def dead_pid() -> int:
    """The PID of a process that has exited."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], stdout=PIPE)
    return int(child.stdout)


def test_a_full_disk_names_the_last_good_checkpoint_and_leaves_it_usable(tmp_path, monkeypatch):
    import diffcore.training.checkpoint as checkpoint_module

    real_save_state, calls = checkpoint_module.save_state, {"n": 0}

    def failing_save_state(state, path):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save_state(state, path)

    monkeypatch.setattr(checkpoint_module, "save_state", failing_save_state)
    ckpts = tmp_path / "crash" / "checkpoints"
    with pytest.raises(OSError) as raised:
        run(tmp_path, "crash")  # checkpoint 3 is written, checkpoint 6 fails
    assert str(raised.value) == (
        f"could not write checkpoint {ckpts / 'step_000006'} (No space left on device; free some "
        f"space); the last good checkpoint, {ckpts / 'step_000003'}, is intact and a rerun "
        "resumes from it"
    )
    assert raised.value.__cause__.errno == errno.ENOSPC
    assert [p.name for p in ckpts.iterdir()] == ["step_000003"]  # its temporary is gone
    assert checkpoint_damage(ckpts / "step_000003") is None
    monkeypatch.setattr(checkpoint_module, "save_state", real_save_state)
    # What a hard kill would leave: a temporary directory that looks newer and is incomplete.
    leftover = ckpts / f".tmp-step_000006-pid{dead_pid()}-abc"
    shutil.copytree(ckpts / "step_000003", leftover)
    (leftover / "training_state.safetensors").write_bytes(b"truncated")
    assert latest_checkpoint(tmp_path / "crash") == ckpts / "step_000003"

    resumed_model, _ = run(tmp_path, "crash", model=make_model())
    full_model, _ = run(tmp_path, "full")
    assert_models_equal(resumed_model, full_model)
    # The dead writer's temporary was removed on resume.
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_000006", "step_000008"]


def test_pruning_removes_only_this_processs_temporaries(tmp_path):
    ckpts = tmp_path / "run" / "checkpoints"
    theirs = ckpts / f".tmp-step_000009-pid{os.getppid()}-abc"  # a live run writing
    ours = ckpts / f".tmp-step_000009-pid{os.getpid()}-abc"
    legacy = ckpts / ".tmp-step_000009-abc"  # no owner in the name: nobody may remove it
    for d in (theirs, ours, legacy):
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"in progress")
    run(tmp_path, "run")
    assert (theirs / "model.safetensors").read_bytes() == b"in progress"
    assert legacy.is_dir()
    assert not ours.exists()


def test_a_damaged_checkpoint_is_skipped_on_resume_for_the_one_before(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "part", interrupt_at(13))  # step 7's first micro-batch: after checkpoint 6
    ckpts = tmp_path / "part" / "checkpoints"
    weights = ckpts / "step_000006" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one flipped bit in a weight: still loads, silently wrong
    weights.write_bytes(bytes(data))
    assert checkpoint_damage(weights.parent) == (
        "model.safetensors does not match its SHA-256 in checksums.json"
    )
    assert checkpoint_damage(ckpts / "step_000003") is None
    assert latest_checkpoint(tmp_path / "part") == weights.parent  # unverified: newest
    with pytest.warns(RuntimeWarning, match=r"skipping the damaged checkpoint .*step_000006"):
        resumed, _ = run(tmp_path, "part", model=make_model())  # from step 3
    full, _ = run(tmp_path, "full")
    assert_models_equal(resumed, full)
    assert checkpoint_damage(weights.parent) is None  # rewritten by the resumed run


HOLD = """
import sys
from diffcore.training.lock import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_training_into_a_folder_another_process_holds_is_refused(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run")], stdin=PIPE, stdout=PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            RunLockedError, match=rf"in use by another training run \(PID {holder.pid}\b"
        ):
            run(tmp_path, "run")
        assert list_checkpoints(tmp_path / "run") == []
    finally:
        holder.communicate("\n", timeout=60)
    run(tmp_path, "run")  # free again once the holder is gone


def test_accumulating_two_micro_batches_matches_one_batch_twice_as_large(tmp_path):
    cfg = dataclasses.replace(BASE, ema_decay=None, steps=6)
    accum, _ = run(
        tmp_path, "a", regression_loss, dataclasses.replace(cfg, batch_size=8, grad_accum=2)
    )
    big, _ = run(
        tmp_path, "b", regression_loss, dataclasses.replace(cfg, batch_size=16, grad_accum=1)
    )
    for (name, a), (_, b) in zip(accum.state_dict().items(), big.state_dict().items(), strict=True):
        # Only the summation order differs: float32 rounding.
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


@pytest.mark.slow
def test_a_compiled_run_trains_the_same_weights_as_an_eager_run(tmp_path):
    cfg = dataclasses.replace(BASE, ema_decay=None, steps=4)
    eager, _ = run(tmp_path, "eager", regression_loss, cfg)
    compiled, _ = run(tmp_path, "compiled", regression_loss, dataclasses.replace(cfg, compile=True))
    for (name, a), (_, b) in zip(
        eager.state_dict().items(), compiled.state_dict().items(), strict=True
    ):
        # inductor may fuse and reorder float32 arithmetic: rounding-level differences only
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    saved = load_file(str(tmp_path / "compiled" / "final" / "model.safetensors"))
    assert not any(k.startswith("_orig_mod") for k in saved)  # weights of the plain module


class DictRows(torch.utils.data.Dataset):
    """A map-style dataset of dict samples, collated by the default collate into a dict."""

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.data[i]}


def dropout_loss(model, batch, generator):
    """Uses the global RNG too (like dropout inside a model), besides the loop's generator."""
    x = F.dropout(batch["x"], p=0.25, training=True)
    return denoising_loss(model, x, generator)


def test_map_style_dataset_resumes_exactly_when_the_loss_uses_the_global_rng(tmp_path):
    def go(name, loss_fn, model):
        return train(
            model, loss_fn, DictRows(make_data()), BASE, out_dir=tmp_path / name, progress=False
        )

    full = make_model()
    go("full", dropout_loss, full)
    with pytest.raises(KeyboardInterrupt):
        go("part", interrupt_at(2 * 4 + 2, dropout_loss), make_model())
    resumed = make_model()
    go("part", dropout_loss, resumed)  # resumes mid-epoch: a new DataLoader is made there
    assert_models_equal(resumed, full)


def test_gradients_are_clipped_to_max_norm_before_the_optimizer_step(tmp_path):
    norms = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    def steep_loss(model, batch, generator):
        return 1e3 * regression_loss(model, batch, generator)

    handle = register_optimizer_step_pre_hook(record)
    try:
        for clip in (0.5, None):
            cfg = dataclasses.replace(BASE, steps=3, grad_clip=clip)
            run(tmp_path, f"clip{clip}", steep_loss, cfg)
    finally:
        handle.remove()
    clipped, free = norms[:3], norms[3:]
    assert max(clipped) <= 0.5 * (1 + 1e-5) and min(free) > 0.5


def test_ema_follows_decay_times_average_plus_one_minus_decay_times_weights(tmp_path):
    model = make_model()
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = dataclasses.replace(BASE, steps=2, checkpoint_every=1, ema_decay=0.75, grad_accum=1)
    _, result = run(tmp_path, "ema", config=cfg, model=model)
    ckpts = dict(list_checkpoints(tmp_path / "ema"))
    previous = theta0
    for step in (1, 2):
        weights = load_file(ckpts[step] / "model.safetensors")
        ema = load_file(ckpts[step] / "ema.safetensors")
        for k in weights:
            expected = 0.75 * previous[k] + 0.25 * weights[k]
            torch.testing.assert_close(ema[k], expected, rtol=0, atol=1e-6)
        previous = ema
    final = from_pretrained(MLP, result.final_model)
    assert all(torch.equal(v, previous[k]) for k, v in final.state_dict().items())


def test_ema_warmup_averages_early_steps_with_a_growing_window(tmp_path):
    # decay of update n: min(0.75, (1 + n) / (10 + n)) = 0.1, 2/11, 0.25 for steps 1, 2, 3
    model = make_model()
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = dataclasses.replace(
        BASE, steps=3, checkpoint_every=1, keep_checkpoints=3, ema_decay=0.75, ema_warmup=True
    )
    _, result = run(tmp_path, "warm", config=cfg, model=model)
    ckpts = dict(list_checkpoints(tmp_path / "warm"))
    previous = theta0
    for step, decay in ((1, 0.1), (2, 2 / 11), (3, 0.25)):
        weights = load_file(ckpts[step] / "model.safetensors")
        ema = load_file(ckpts[step] / "ema.safetensors")
        for k in weights:
            expected = decay * previous[k] + (1 - decay) * weights[k]
            torch.testing.assert_close(ema[k], expected, rtol=0, atol=1e-6)
        previous = ema
    assert EMA(model, 0.999, warmup=True).decay_at(10_000) == 0.999


def test_ema_shadow_stays_float32_and_keeps_ties():
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False)).to(torch.bfloat16)
    model[1].weight = model[0].weight
    ema = EMA(model, decay=0.5)
    assert list(ema.params) == ["0.weight"] and ema.params["0.weight"].dtype == torch.float32
    averaged = ema.averaged_model(model)
    assert averaged[1].weight is averaged[0].weight


def test_log_rows_follow_the_one_cycle_schedule(tmp_path):
    rows = []
    cfg = dataclasses.replace(BASE, ema_decay=None, warmup=0.25, div_factor=10.0)
    _, result = run(tmp_path, "log", config=cfg, on_log=rows.append)
    assert rows == result.log and [r.step for r in rows] == [2, 4, 6, 8]
    lrs = [r.lr for r in rows]  # the rate used by steps 2, 4, 6, 8 (1-based)
    peak = lrs.index(max(lrs))
    assert peak == 0 and pytest.approx(lrs[0]) == cfg.lr  # warmup ends after step 2
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < cfg.lr / 10


@pytest.mark.parametrize("steps", [1, 2, 3, 19, 20])
def test_runs_too_short_for_the_warmup_fraction_still_train_within_the_peak_rate(tmp_path, steps):
    """5 % warmup of 20 steps is one step, a phase OneCycleLR measures as zero long (and divides
    by); shorter runs have less than one."""
    rows = []
    cfg = dataclasses.replace(BASE, steps=steps, warmup=0.05, log_every=1, ema_decay=None)
    _, result = run(tmp_path, f"short{steps}", config=cfg, on_log=rows.append)
    assert [r.step for r in rows] == list(range(1, steps + 1))
    assert all(0 < r.lr <= cfg.lr * (1 + 1e-6) for r in rows)
    assert torch.isfinite(torch.tensor(result.loss))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs_on_cpu_and_checkpoints_the_grad_scaler(tmp_path, precision):
    cfg = dataclasses.replace(BASE, steps=2, precision=precision)
    model, result = run(tmp_path, precision, config=cfg)
    assert model.net[0].weight.dtype == torch.float32  # autocast, not a cast of the weights
    assert torch.isfinite(torch.tensor(result.loss))
    scaler = load_state(result.checkpoint / "training_state.safetensors")["scaler"]
    assert ("scale" in scaler) == (precision == "fp16")


def test_half_precision_on_a_cpu_without_native_units_warns_and_fp32_never_does(monkeypatch):
    """oneDNN runs bf16 matmuls 80x slower than fp32 on an AVX2-only CPU: asking for them there
    warns and names the fix; a CPU with the units, fp32 and auto stay silent."""
    from diffcore.training import loop

    cpu = torch.device("cpu")
    monkeypatch.setattr(loop, "cpu_has_native", lambda dtype: False)
    with pytest.warns(RuntimeWarning, match="use precision='fp32'"):
        assert loop.autocast_dtype("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr(loop, "cpu_has_native", lambda dtype: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loop.autocast_dtype("bf16", cpu) == torch.bfloat16
        assert loop.autocast_dtype("fp32", cpu) is None and loop.autocast_dtype("auto", cpu) is None
    assert isinstance(loop.cpu_has_native(torch.bfloat16), bool)


def test_batches_resume_exactly_and_ranks_split_each_global_batch():
    data = torch.arange(10)
    whole = BatchStream(data, batch_size=4, seed=3)
    seen = [next(whole) for _ in range(5)]  # 2 batches per epoch: crosses two epoch ends
    assert torch.equal(
        torch.cat(seen[:2]).sort().values, epoch_permutation(10, 3, 0)[:8].sort().values
    )
    later = BatchStream(data, batch_size=4, seed=3, position=Position(1, 4))
    assert all(torch.equal(next(later), s) for s in seen[3:])
    halves = [BatchStream(data, batch_size=2, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for s in seen:
        assert torch.equal(torch.cat([next(h) for h in halves]), s)


def test_length_grouping_pads_less_covers_every_sample_and_resumes_exactly():
    lengths = torch.randint(1, 200, (1000,), generator=torch.Generator().manual_seed(0))

    class Ragged(torch.utils.data.Dataset):
        def __len__(self):
            return len(lengths)

        def __getitem__(self, i):
            return i

    data = Ragged()
    data.lengths = lengths.tolist()
    collate = torch.tensor
    plain = BatchStream(data, batch_size=10, seed=1, collate_fn=collate)
    grouped = BatchStream(data, batch_size=10, seed=1, collate_fn=collate, length_window=20)
    epoch = [next(grouped) for _ in range(100)]
    assert torch.equal(torch.cat(epoch).sort().values, torch.arange(1000))  # each sample once
    spread = lambda batches: sum(int(lengths[b].max() - lengths[b].min()) for b in batches)
    assert spread(epoch) < spread([next(plain) for _ in range(100)]) / 10
    assert len({int(lengths[b].max()) for b in epoch[:20]}) > 5  # batch order is shuffled
    later = BatchStream(
        data, batch_size=10, seed=1, collate_fn=collate, length_window=20, position=Position(0, 370)
    )
    assert all(torch.equal(next(later), b) for b in epoch[37:60])
    with pytest.raises(ValueError, match="lengths"):
        BatchStream(torch.arange(10), batch_size=2, seed=0, length_window=4)


def test_invalid_inputs_are_rejected_with_the_reason(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="grad_accum"):
        TrainConfig(grad_accum=0)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(TypeError, match="scalar"):
        run(tmp_path, "vec", lambda m, b, g: (m(b) - b).square())
    with pytest.raises(ValueError, match="fewer than one global batch"):
        train(
            make_model(),
            denoising_loss,
            make_data(4),
            BASE,
            out_dir=tmp_path / "tiny",
            progress=False,
        )
    run(tmp_path, "done", config=dataclasses.replace(BASE, steps=2))
    with pytest.raises(ValueError, match="resume=True"):
        run(tmp_path, "done", config=dataclasses.replace(BASE, steps=2), resume=False)
    with pytest.raises(ValueError, match="one-cycle schedule cannot be stretched"):
        run(tmp_path, "done", config=dataclasses.replace(BASE, steps=4))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert (dist_info().rank, dist_info().world_size) == (1, 2)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2"):
        dist_info()


def test_condition_dropout_uses_the_null_value_at_the_given_rate():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (4000,), generator=g)
    dropped = drop_condition(labels, 0.25, 10, g)
    changed = dropped == 10
    assert 0.22 < changed.float().mean() < 0.28
    assert torch.equal(dropped[~changed], labels[~changed])
    assert torch.equal(drop_condition(labels, 0.0, 10, g), labels)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        drop_condition(labels, 1.5, 10, g)


def test_condition_dropout_replaces_whole_rows_of_embeddings():
    context = torch.ones(1000, 4, 8)
    out = drop_condition(context, 0.5, 0.0, torch.Generator().manual_seed(0))
    row_sums = out.sum((1, 2))
    assert set(row_sums.unique().tolist()) == {0.0, 32.0}
    assert 0.4 < (row_sums == 0).float().mean() < 0.6


def test_a_non_finite_loss_stops_before_its_update_and_keeps_the_last_checkpoint(tmp_path):
    from diffcore.training import NonFiniteLossError

    calls = []

    def diverging(model, batch, generator):
        calls.append(1)
        loss = denoising_loss(model, batch, generator)
        return loss * math.nan if len(calls) >= 4 * BASE.grad_accum + 1 else loss

    model = make_model()
    config = dataclasses.replace(BASE, checkpoint_every=2, ema_decay=None)
    with pytest.raises(NonFiniteLossError, match="was nan at step 5") as err:
        train(model, diverging, make_data(), config, out_dir=tmp_path, progress=False)
    assert "step_000004" in str(err.value)  # the last good checkpoint, named
    assert all(torch.isfinite(p).all() for p in model.parameters())  # no NaN update was made
    assert [p.name for p in sorted((tmp_path / "checkpoints").iterdir())] == [
        "step_000002",
        "step_000004",
    ]
    assert not (tmp_path / "final").exists()


def test_weights_that_are_not_finite_are_refused_on_loading(tmp_path):
    from diffcore.io import load_weights, save_weights

    model = make_model()
    with torch.no_grad():
        model.net[0].weight[0, 0] = math.inf
    path = save_weights(model, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="NaN or infinite weights .*net.0.weight"):
        load_weights(make_model(), path)
