"""Kernel and sampling-loop benchmark: the lean loop and the fused ops against their eager forms.

Three tables, each measured side by side in one run (ratios, not absolute times, are what
carry over between machines):

1. End-to-end image sampling with the image package's `fmnist` U-Net, DPM-Solver++(2M) for 20
   network calls at batch 1 and 256: our loop with the compiled denoiser
   (`ImagePipeline(compile=True)`: `diffcore.denoisers.compiled`, weights frozen in and stored
   channels-last), our eager loop, and diffusers' `DPMSolverMultistepScheduler`
   loop driving the same network (its betas taken from our schedule, v-prediction). Compile time
   is reported apart and left out of the per-run times.
2. Masked-token sampling (`diffcore.kernels.sample_tokens`): tokens/s of the fused path (Triton on
   CUDA; the reference through torch.compile on CPU) against the PyTorch reference.
3. The sampler update against a plain tensor copy of the same size: time ratio and the share of
   the copy's bandwidth (arrays read and written per second), for the reference and the fused
   paths (Triton on CUDA; on CPU the C++ loop, backend "cpp", and the reference through
   torch.compile).

    uv run --package research --group benchmark python -m research.cross_domain.kernels_benchmark
    uv run python -m research.cross_domain.kernels_benchmark --quick   # small sizes, few repeats

Without diffusers (the research app's `benchmark` group) the diffusers column is left out.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch

from diffcore.generation import sampling_grid
from diffcore.kernels import sample_tokens, sampler_update, use_backend
from diffcore.samplers import sample_dpmpp_2m
from diffimage import ImagePipeline, build_model
from research._results import results_dir, write_results
from research._utils import study_parser

CALLS = 20  # network calls per image sample (DPM-Solver++(2M): one per step)


def parse_args() -> argparse.Namespace:
    p = study_parser(__spec__.name, __doc__)
    p.add_argument("--model", help="a trained image model folder (default: a fresh fmnist U-Net)")
    p.add_argument("--batches", default="1,256", help="image sampling batch sizes")
    p.add_argument("--out", default="outputs/kernels_benchmark")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    p.add_argument("--skip-images", action="store_true")
    p.add_argument("--skip-tokens", action="store_true")
    p.add_argument(
        "--results",
        help="folder for results.json with the command, machine and figures "
        "(default: docs/results/cross_domain/kernels)",
    )
    return p.parse_args()


def timed(
    device: torch.device, repeats: int, fn: Callable[..., object], *args: object, **kwargs: object
) -> float:
    """Median wall seconds of ``fn(*args, **kwargs)`` over ``repeats`` runs after a warm-up."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn(*args, **kwargs)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args, **kwargs)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# 1. End-to-end image sampling


def diffusers_loop(pipe: ImagePipeline) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Sampling with diffusers' DPM-Solver++ scheduler driving our network, or None without
    diffusers. Betas come from our schedule at 1000 steps, so both loops solve the same ODE."""
    try:
        from diffusers import DPMSolverMultistepScheduler
    except ImportError:
        return None
    schedule = pipe.model.process.schedule
    t = torch.arange(0, 1001, dtype=torch.float64) / 1000
    alpha_bar = 1 / (1 + schedule.sigma(t.clamp(min=1e-4)) ** 2)
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        trained_betas=betas.float().numpy(),
        prediction_type="v_prediction",
        algorithm_type="dpmsolver++",
        solver_order=2,
    )
    model = pipe.model

    @torch.no_grad()
    def run(noise: torch.Tensor) -> torch.Tensor:
        scheduler.set_timesteps(CALLS, device=noise.device)
        x = noise * scheduler.init_noise_sigma
        for step in scheduler.timesteps:
            # diffusers' timestep k is time (k + 1) / 1000 of our continuous schedule
            time_in = ((step + 1) / 1000).float().expand(x.shape[0]).to(noise.device)
            v = model(scheduler.scale_model_input(x, step), time_in)
            x = scheduler.step(v, step, x).prev_sample
        return x

    return run


def image_rows(args: argparse.Namespace, device: torch.device) -> list[dict]:
    if args.model:
        pipe = ImagePipeline.from_pretrained(args.model, device=device)
    else:
        torch.manual_seed(0)
        model = build_model("fmnist", channels=1, image_size=(28, 28), num_classes=10)
        pipe = ImagePipeline(model, device=device)
    grid = sampling_grid(pipe.model.process, "dpmpp_2m", CALLS)
    eager = pipe.denoiser({}, {}, 1.0)
    # what `compile=True` gives users: the compiled denoiser on a channels-last copy of the model
    fast_pipe = ImagePipeline(copy.deepcopy(pipe.model), device=device, compile=True)
    theirs = diffusers_loop(pipe)
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        noise = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        noise = noise.to(device)
        fast = fast_pipe.denoiser({}, {}, 1.0)
        start = time.perf_counter()
        compiled_out = sample_dpmpp_2m(fast, noise, grid)  # the first run compiles
        compile_seconds = time.perf_counter() - start
        eager_out = sample_dpmpp_2m(eager, noise, grid)
        repeats = 3 if args.quick or batch > 16 else 10
        seconds = {
            "compiled": timed(device, repeats, sample_dpmpp_2m, fast, noise, grid),
            "eager": timed(device, repeats, sample_dpmpp_2m, eager, noise, grid),
        }
        if theirs is not None:
            seconds["diffusers"] = timed(device, repeats, theirs, noise)
        row = {
            "batch": batch,
            "calls": CALLS,
            "compile_seconds": compile_seconds,
            "max_difference": (compiled_out - eager_out).abs().max().item(),
            **{f"{k}_seconds": v for k, v in seconds.items()},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# 2. Masked-token sampling


def token_rows(args: argparse.Namespace, device: torch.device) -> list[dict]:
    fused = "triton" if device.type == "cuda" else "compiled"
    # (positions, vocabulary): protein (33), a small word-piece vocabulary, GPT-2's
    shapes = [(4096, 33), (1024, 8192), (256, 50257)]
    if args.quick:
        shapes = [(256, 33), (64, 8192)]
    rows = []
    for positions, vocab in shapes:
        logits = torch.randn(positions, vocab, generator=torch.Generator().manual_seed(0))
        logits = (3 * logits).to(device)
        for top_p in (None, 0.9):
            seconds = {}
            for backend in (fused, "reference"):
                generator = torch.Generator(device).manual_seed(0)
                options = {"temperature": 1.0, "top_p": top_p, "generator": generator}
                with use_backend(backend):
                    repeats = 3 if args.quick else 10
                    seconds[backend] = timed(device, repeats, sample_tokens, logits, **options)
            row = {
                "positions": positions,
                "vocab": vocab,
                "top_p": top_p,
                "fused": fused,
                "fused_tokens_per_s": positions / seconds[fused],
                "reference_tokens_per_s": positions / seconds["reference"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


# 3. The update against a copy


def update_rows(args: argparse.Namespace, device: torch.device) -> list[dict]:
    backends = (
        ["triton", "reference"] if device.type == "cuda" else ["cpp", "compiled", "reference"]
    )
    sizes_mb = [1, 16, 128] if device.type == "cpu" else [8, 64, 512]
    if args.quick:
        sizes_mb = [1, 4]
    rows = []
    for mb in sizes_mb:
        n = mb * 2**20 // 4
        g = torch.Generator(device).manual_seed(0)
        x, denoised, extra = (torch.randn(n, generator=g, device=device) for _ in range(3))
        copy_out = torch.empty_like(x)
        repeats = 5 if args.quick else 20
        # Two copies: into a buffer that exists (pure memory traffic), and into a new tensor
        # (clone), which pays for fresh memory the way the update's own result does.
        copy_into = timed(device, repeats, copy_out.copy_, x)
        clone = timed(device, repeats, x.clone)
        for name, kwargs, arrays in (
            ("euler / ddim (x, denoised)", {}, 3),
            ("ddpm (x, denoised, noise)", {"noise": extra, "c": 0.1}, 4),
            ("dpm++ 2m (x, denoised, prev)", {"prev": extra, "d": -0.2}, 4),
        ):
            row = {
                "megabytes": mb,
                "update": name,
                "arrays": arrays,
                "copy_into_seconds": copy_into,
                "clone_seconds": clone,
            }
            for backend in backends:
                with use_backend(backend):
                    seconds = timed(
                        device, repeats, sampler_update, x, denoised, 0.9, 0.1, **kwargs
                    )
                row[f"{backend}_seconds"] = seconds
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


# Tables


def format_tables(s: dict) -> str:
    lines = [
        f"# kernels benchmark, {s['date']}, {s['machine']}, {s['threads']} threads, "
        f"device {s['device_name']}",
        "",
    ]
    if s["images"]:
        lines += [
            f"End-to-end image sampling, fmnist U-Net, DPM-Solver++(2M), {CALLS} network calls "
            "(seconds per batch, median)",
            "",
            "| batch | compiled | eager | diffusers loop | eager / compiled | diffusers / compiled "
            "| compile once (s) | max difference |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in s["images"]:
            theirs = r.get("diffusers_seconds", float("nan"))
            lines.append(
                f"| {r['batch']} | {r['compiled_seconds']:.3f} | {r['eager_seconds']:.3f} | "
                f"{theirs:.3f} | {r['eager_seconds'] / r['compiled_seconds']:.2f} | "
                f"{theirs / r['compiled_seconds']:.2f} | {r['compile_seconds']:.0f} | "
                f"{r['max_difference']:.1e} |"
            )
        lines.append("")
    if s["tokens"]:
        lines += [
            "Masked-token sampling (temperature 1), tokens per second",
            "",
            "| positions | vocabulary | top-p | fused path | fused | reference | fused / reference |",
            "| ---: | ---: | ---: | --- | ---: | ---: | ---: |",
        ]
    for r in s["tokens"]:
        lines.append(
            f"| {r['positions']} | {r['vocab']} | {r['top_p'] or '-'} | {r['fused']} | "
            f"{r['fused_tokens_per_s']:,.0f} | {r['reference_tokens_per_s']:,.0f} | "
            f"{r['fused_tokens_per_s'] / r['reference_tokens_per_s']:.2f} |"
        )
    names = ("triton", "cpp", "compiled", "reference")
    backends = [b for b in names if f"{b}_seconds" in s["updates"][0]]
    lines += [
        "",
        "Sampler update against a tensor copy of the same size (fp32): time over the copy's time,",
        "and bandwidth share = (arrays moved / time) / (2 arrays / copy time). 'clone' copies into",
        "a new tensor (fresh memory, like the update's result); 'copy_' into an existing one.",
        "",
        "| MB per tensor | update | "
        + " | ".join(
            f"{b}: / clone | {b}: / copy_ | {b}: share of clone bandwidth" for b in backends
        )
        + " |",
        "| ---: | --- | " + " | ".join("---: | ---: | ---:" for _ in backends) + " |",
    ]
    for r in s["updates"]:
        cells = []
        for b in backends:
            t = r[f"{b}_seconds"]
            share = (r["arrays"] / t) / (2 / r["clone_seconds"])
            cells.append(
                f"{t / r['clone_seconds']:.2f} | {t / r['copy_into_seconds']:.2f} | {share:.0%}"
            )
        lines.append(f"| {r['megabytes']} | {r['update']} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = [] if args.skip_images else image_rows(args, device)
    summary = {
        "date": str(date.today()),
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "images": images,
        "tokens": [] if args.skip_tokens else token_rows(args, device),
        "updates": update_rows(args, device),
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = format_tables(summary)
    (out / "table.md").write_text(table + "\n")
    print(table)
    folder = results_dir("cross_domain/kernels", args.results)
    settings = {"model": args.model, "batches": args.batches, "quick": args.quick}
    path = write_results(
        folder, figures=summary, precision="fp32", device=str(device), samples=[], settings=settings
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
