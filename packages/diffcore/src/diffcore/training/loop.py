"""One training loop for every domain: AdamW, one-cycle LR, gradient accumulation and
clipping, EMA, bf16/fp16 autocast, atomic checkpoints with exact resume, DDP under torchrun.

The domain supplies only ``loss_fn(model, batch, generator) -> scalar``; the loop owns the
``generator`` (on the training device) and seeds it, and the global RNG (dropout), for every
micro-batch from (seed, step, the micro-batch's place in the global batch). The noise a sample
gets therefore depends on neither the process nor the moment a run resumed: a resumed run is
bit-identical to an uninterrupted one (on CPU), and N processes train like one process that
accumulates N micro-batches (up to float summation order).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from diffcore.io import (
    WEIGHTS_NAME,
    atomic_directory,
    remove_stale_temporaries,
    save_pretrained,
    save_weights,
)
from diffcore.training.checkpoint import (
    CHECKPOINTS,
    checkpoint_path,
    latest_checkpoint,
    prune_checkpoints,
    read_checkpoint,
    write_checkpoint,
)
from diffcore.training.config import (
    PRECISIONS,
    LogRow,
    NonFiniteLossError,
    TrainConfig,
    TrainResult,
)
from diffcore.training.data import BatchStream, Position, to_device
from diffcore.training.distributed import (
    DistInfo,
    barrier,
    dist_info,
    init_distributed,
    mean_over_ranks,
)
from diffcore.training.ema import EMA
from diffcore.training.history import TRAIN_LOG, append_row, trim_log
from diffcore.training.lock import run_lock

LossFn = Callable[[nn.Module, Any, torch.Generator], Tensor]


_MASK64 = 2**64 - 1


def _mix64(x: int) -> int:
    """splitmix64's output function (Steele, Lea & Flood 2014): neighbouring inputs give
    unrelated 64-bit outputs, so seeds built from counters do not give correlated streams."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of the integers ``parts`` (order matters)."""
    h = 0
    for part in parts:
        h = _mix64(h ^ (part & _MASK64))
    return h >> 1


def _seed_micro_batch(seed: int, step: int, index: int) -> tuple[int, int]:
    """Seeds of the loss generator and of the global RNG for micro-batch ``index`` of the
    global batch of optimizer step ``step`` (0-based), where ``index = micro * world_size +
    rank`` is the place the data stream gives that micro-batch's samples."""
    return _seed(seed, step, index, 0), _seed(seed, step, index, 1)


def _seed_rngs(
    seed: int, step: int, index: int, generator: torch.Generator, device: torch.device
) -> None:
    loss_seed, global_seed = _seed_micro_batch(seed, step, index)
    generator.manual_seed(loss_seed)
    # Not torch.manual_seed: that seeds every visible GPU, and under torchrun each process
    # should touch its own only.
    torch.default_generator.manual_seed(global_seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(global_seed)  # the current device, set by resolve_device


def resolve_device(device: str | torch.device | None, info: DistInfo | None = None) -> torch.device:
    """The device training runs on: CUDA when there is one and ``device`` is None; under
    torchrun, the rank's own GPU."""
    info = info or dist_info()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", info.local_rank if info.distributed else 0)
        torch.cuda.set_device(device)
    return device


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """The precision ``train`` runs ``TrainConfig.precision`` at on ``device``: "fp32", "bf16" or
    "fp16". "auto" is fp32 off CUDA (CPU bf16 is slow without native units), bf16 on CUDA, and
    fp16 on GPUs without bf16 (pre-Ampere, where fp16 with a GradScaler is mixed precision)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if torch.device(device).type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``train`` uses for ``TrainConfig.precision`` on ``device`` (None: fp32),
    for code that must time or run a step exactly as training will."""
    explicit = precision != "auto"
    precision = resolve_precision(precision, device)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if explicit and dtype is not None and device.type == "cpu" and not cpu_has_native(dtype):
        warnings.warn(
            f"precision {precision!r} on a CPU without native {precision} matrix units (no "
            "AVX512-BF16/FP16 or AMX): oneDNN falls back to a slow path (a 1024x1024 bf16 matmul "
            "measured 80x slower than fp32 on an AVX2 EPYC); use precision='fp32' (or 'auto')",
            RuntimeWarning,
            stacklevel=2,
        )
    return dtype


def cpu_has_native(dtype: torch.dtype) -> bool:
    """Whether this CPU multiplies ``dtype`` (bf16 or fp16) matrices natively, as oneDNN reports
    it; True when torch cannot tell (no warning then)."""
    check = {
        torch.bfloat16: "_is_mkldnn_bf16_supported",
        torch.float16: "_is_mkldnn_fp16_supported",
    }[dtype]
    try:
        return bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):
        return True


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    # No weight decay on biases and norm gains (ndim < 2): decaying them only hurts (nanoGPT).
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no parameters that require gradients")
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def _constant(_: int) -> float:
    return 1.0


def _scheduler(
    opt: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    if config.lr_schedule == "constant" or config.steps < 3:  # too short for two phases
        return torch.optim.lr_scheduler.LambdaLR(opt, _constant)
    # OneCycleLR divides by each phase's length in steps, so neither may round to zero.
    pct_start = min(max(config.warmup, 1.5 / config.steps), 1 - 1.5 / config.steps)
    # Smith & Topin 2017, "Super-Convergence": warm up to lr, then cosine-anneal far below it.
    return torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=config.lr,
        total_steps=config.steps,
        pct_start=pct_start,
        anneal_strategy="cos",
        cycle_momentum=False,  # keep the configured betas
        div_factor=config.div_factor,
        final_div_factor=config.final_div_factor,
    )


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so an interrupt never lands between the optimizer
    update and the bookkeeping that a checkpoint must agree with."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def _past(deadline: float | None, info: DistInfo, device: torch.device) -> bool:
    """Whether ``deadline`` (a ``time.time()`` value) has passed; under DDP, whether it has on
    any rank, so that every rank stops after the same step."""
    if deadline is None:
        return False
    late = time.time() >= deadline
    if not info.distributed:
        return late
    flag = torch.tensor(float(late), device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


@dataclasses.dataclass
class _Snapshot:
    """Everything that is not in the model/optimizer objects, as of a step boundary (no RNG
    state: the loop reseeds every micro-batch)."""

    step: int
    position: Position


def _check_finite(
    value: Tensor,
    step: int,
    ckpt_step: int,
    out_dir: Path,
    what: str = "loss",
    stopped: str = "before that update",
) -> None:
    """Raise NonFiniteLossError when ``value`` (the step's loss or gradient norm) is NaN/inf."""
    if bool(torch.isfinite(value)):
        return
    kept = (
        f"the last good checkpoint is {checkpoint_path(out_dir, ckpt_step)}"
        if ckpt_step >= 0
        else "no checkpoint was written"
    )
    raise NonFiniteLossError(
        f"the {what} was {float(value)} at step {step}; training stopped {stopped} ({kept}). "
        "Lower the learning rate, or check the data for NaN/inf values"
    )


def _save_final(model: nn.Module, directory: Path) -> Path:
    if dataclasses.is_dataclass(getattr(model, "config", None)):
        return save_pretrained(model, directory)
    # A model outside the config convention still gets its weights (no config.json).
    with atomic_directory(directory) as tmp:
        save_weights(model, tmp / WEIGHTS_NAME)
    return directory


def train(
    model: nn.Module,
    loss_fn: LossFn,
    dataset: Any,
    config: TrainConfig,
    *,
    out_dir: str | Path,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    device: str | torch.device | None = None,
    resume: bool = True,
    progress: bool = True,
    on_log: Callable[[LogRow], None] | None = None,
) -> TrainResult:
    """Train ``model`` to ``config.steps`` optimizer steps, resuming from ``out_dir`` if a
    checkpoint is there (``resume=True``).

    loss_fn(model, batch, generator) -> scalar loss; ``model`` is the (DDP-wrapped) module,
    ``batch`` the collated micro-batch on the device, ``generator`` the loop's seeded RNG on
    the device (draw all training noise from it). dataset: map-style (``__len__`` and
    ``__getitem__``) or a tensor whose rows are samples. on_log(row) is called on rank 0.
    Writes ``out_dir/checkpoints/step_*/``, ``out_dir/final/`` (EMA weights when EMA is on,
    through ``save_pretrained`` for models with a dataclass ``config``) and each log row, with
    the seconds since the run began, to ``out_dir/train_log.jsonl`` (see ``history``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    info = dist_info()
    device = resolve_device(device, info)
    owns_group = init_distributed(device)
    # Rank 0 alone writes out_dir: it alone holds the lock that keeps a second run out.
    lock = run_lock(out_dir) if info.is_main else contextlib.nullcontext()
    try:
        with lock:
            result = _run(
                model,
                loss_fn,
                dataset,
                config,
                Path(out_dir),
                collate_fn,
                device,
                info,
                resume,
                progress,
                on_log,
            )
        if owns_group:
            # A rank that tears its group down while a peer is still in a collective aborts the
            # peer ("terminate called without an active exception" under gloo): finish together.
            dist.barrier()
        return result
    finally:
        if owns_group:
            dist.destroy_process_group()


def _run(
    model: nn.Module,
    loss_fn: LossFn,
    dataset: Any,
    config: TrainConfig,
    out_dir: Path,
    collate_fn: Callable[[list[Any]], Any] | None,
    device: torch.device,
    info: DistInfo,
    resume: bool,
    progress: bool,
    on_log: Callable[[LogRow], None] | None,
) -> TrainResult:
    model.to(device)
    amp_dtype = autocast_dtype(config.precision, device)
    optimizer = _optimizer(model, config)
    scheduler = _scheduler(optimizer, config)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    ema = None
    if config.ema_decay is not None:
        ema = EMA(model, config.ema_decay, warmup=config.ema_warmup)
    generator = torch.Generator(device=device)

    step, position = 0, Position()
    if info.is_main:  # a killed run's half-written files; a live one's stay (the PID tells)
        for folder in (out_dir, out_dir / CHECKPOINTS):
            remove_stale_temporaries(folder)
    last_ckpt = latest_checkpoint(out_dir, verify=resume)
    if last_ckpt is not None and not resume:
        raise ValueError(
            f"{out_dir} already holds checkpoints (newest: {last_ckpt.name}); pass resume=True "
            "to continue that run, or use an empty out_dir to start a new one"
        )
    if last_ckpt is not None:
        state = read_checkpoint(last_ckpt, model=model, ema=ema)
        old = state["config"]
        if old["lr_schedule"] != config.lr_schedule or (
            config.lr_schedule == "one_cycle" and old["steps"] != config.steps
        ):
            raise ValueError(
                f"{last_ckpt} was trained with lr_schedule={old['lr_schedule']!r}, "
                f"steps={old['steps']}; the config asks for {config.lr_schedule!r}, "
                f"steps={config.steps}. A one-cycle schedule cannot be stretched: resume with "
                "the same settings or start a new out_dir"
            )
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        step, position = state["step"], Position(state["epoch"], state["offset"])

    # The loss history continues the resumed run's: rows past its checkpoint are dropped, and
    # the clock goes on from the last row kept.
    log_path = out_dir / TRAIN_LOG
    started = time.time() - (trim_log(log_path, step) if info.is_main else 0.0)

    wrapped: nn.Module = model
    if info.distributed:
        wrapped = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        wrapped = torch.compile(wrapped)
    stream = BatchStream(
        dataset,
        batch_size=config.batch_size,
        seed=config.seed,
        rank=info.rank,
        world_size=info.world_size,
        grad_accum=config.grad_accum,
        collate_fn=collate_fn,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        position=position,
        length_window=config.length_window,
    )

    def checkpoint(snap: _Snapshot) -> Path:
        """Write the checkpoint of ``snap`` (rank 0; no collective, so an interrupted rank may
        call it alone)."""
        directory = checkpoint_path(out_dir, snap.step)
        if info.is_main:
            state = {
                "step": snap.step,
                "epoch": snap.position.epoch,
                "offset": snap.position.offset,
                "world_size": info.world_size,
                "config": dataclasses.asdict(config),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
            }
            write_checkpoint(directory, model=model, ema=ema, state=state)
            prune_checkpoints(out_dir, config.keep_checkpoints)
        return directory

    snap = _Snapshot(step, stream.position)
    ckpt_step = step if last_ckpt is not None else -1
    rows: list[LogRow] = []
    # Losses stay on the device between log rows: no GPU sync per step.
    last_loss = torch.full((), math.nan, device=device)
    interval_sum, interval_n = torch.zeros((), device=device), 0
    stopped_early = False
    sync_checks = device.type != "cuda"
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    show = progress and info.is_main
    bar = tqdm(total=config.steps, initial=step, desc="train", unit="step", disable=not show)
    try:
        while step < config.steps:
            wrapped.train()
            step_loss = torch.zeros((), device=device)
            for micro in range(config.grad_accum):
                batch = to_device(next(stream), device)
                # This micro-batch's place in the global batch, as the stream cut it.
                index = micro * info.world_size + info.rank
                _seed_rngs(config.seed, step, index, generator, device)
                last_micro = micro == config.grad_accum - 1
                # Synchronise gradients across ranks only once, after the last micro-batch.
                sync = (
                    wrapped.no_sync()
                    if info.distributed and not last_micro
                    else contextlib.nullcontext()
                )
                with sync:
                    with torch.autocast(
                        device.type, dtype=amp_dtype, enabled=amp_dtype is not None
                    ):
                        loss = loss_fn(wrapped, batch, generator)
                    if not isinstance(loss, Tensor) or loss.ndim != 0:
                        raise TypeError(f"loss_fn must return a scalar tensor, got {loss!r:.80}")
                    scaler.scale(loss.float() / config.grad_accum).backward()
                step_loss += loss.detach().float()
            if sync_checks:  # a CPU has nothing to wait for: check before the update
                _check_finite(step_loss, step + 1, ckpt_step, out_dir)
            else:  # no GPU sync per step: remember the first bad step, check at boundaries
                bad = ~torch.isfinite(step_loss) & (first_bad < 0)
                first_bad = torch.where(bad, step + 1, first_bad)
            with _deferred_interrupt():
                if config.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                    if sync_checks and not scaler.is_enabled():  # fp16 skips inf steps itself
                        _check_finite(norm, step + 1, ckpt_step, out_dir, what="gradient norm")
                lr = optimizer.param_groups[0]["lr"]
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                if ema is not None:
                    ema.update(model, updates=step)
                step += 1
                snap = _Snapshot(step, stream.position)
            last_loss = step_loss / config.grad_accum
            interval_sum, interval_n = interval_sum + last_loss, interval_n + 1
            bar.update(1)
            stop = _past(config.deadline, info, device)
            if step % config.log_every == 0 or step == config.steps or stop:
                row = LogRow(step, mean_over_ranks(float(interval_sum) / interval_n), lr)
                rows.append(row)
                interval_sum, interval_n = torch.zeros((), device=device), 0
                bar.set_postfix(loss=f"{row.loss:.4g}", lr=f"{row.lr:.3g}")
                if info.is_main:
                    seconds = round(time.time() - started, 3)
                    append_row(log_path, row._asdict() | {"seconds": seconds})
                if on_log is not None and info.is_main:
                    on_log(row)
            boundary = step % config.checkpoint_every == 0 or step == config.steps or stop
            if boundary and not sync_checks and int(first_bad) >= 0:
                stopped = f"at step {step}, saving nothing after step {ckpt_step}"
                _check_finite(
                    torch.tensor(math.nan), int(first_bad), ckpt_step, out_dir, stopped=stopped
                )
            if boundary:
                checkpoint(snap)
                ckpt_step = step
            if stop:
                stopped_early = step < config.steps
                break
    except KeyboardInterrupt:
        # Save the last completed step (the model and optimizer have not moved past it);
        # no collectives here, other ranks may already be gone.
        optimizer.zero_grad(set_to_none=True)
        if snap.step != ckpt_step:
            checkpoint(snap)
        raise
    finally:
        bar.close()
        stream.close()

    final = out_dir / "final"
    if info.is_main:
        try:
            _save_final(ema.averaged_model(model) if ema is not None else model, final)
        except OSError as err:
            raise type(err)(
                f"could not write the final model {final} ({err.strerror or err}); the "
                f"checkpoint {checkpoint_path(out_dir, ckpt_step)} is intact and a rerun "
                "writes final/ from it"
            ) from err
    barrier()
    return TrainResult(
        step, float(last_loss), final, checkpoint_path(out_dir, step), rows, stopped_early
    )
