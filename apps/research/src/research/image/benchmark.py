"""Image benchmark: FID at one wall-clock training budget, ours against diffusers' recipe.

Both models train on Fashion-MNIST for the same --minutes on this machine, then sample with
DDPM-1000, DDIM-50 and Euler / Heun / DPM-Solver++ at 10 and 20 network calls; FID and KID come
from the judge classifier's features against the real test split (docs/image.md). Ours is the
`fmnist` preset (class-conditional, label dropout; its rows sample unconditionally, like the peer,
plus guided class-conditional rows with the judge's accuracy). The peer is diffusers'
`UNet2DModel` + `DDPMScheduler` trained as in diffusers' `train_unconditional.py` example (AdamW
1e-4, betas (0.95, 0.999), weight decay 1e-6, cosine LR with 500 warm-up steps, gradient clipping 1,
EMA with warm-up to 0.9999, batch 16, random flips, epsilon MSE), sized to our parameter count
(+-20 %) and sampled with diffusers' own schedulers. 28x28 images are padded to 32x32 for it
(its down-sampling needs a power of two) and cropped back for scoring.

    uv run python -m research.image.benchmark --minutes 20            # the CPU benchmark
    uv run python -m research.image.benchmark --minutes 0.3 --samples 64 --quick   # smoke test

The peer needs diffusers, in the research app's `benchmark` group:
`uv run --package research --group benchmark python -m research.image.benchmark`;
without it only our rows are printed.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffcore.generation import network_calls, steps_for_calls
from diffcore.training import TrainConfig, default_ema_decay, steps_for_budget
from diffimage import (
    ImagePipeline,
    build_model,
    judge_accuracy,
    judge_features,
    load_images,
    load_judge,
    save_grid,
    score_samples,
    train_judge,
    train_model,
)
from diffimage.budget import seconds_per_step
from diffimage.pixels import to_uint8
from research._results import results_dir, write_results
from research._utils import SHARED_DATA, study_parser

# (sampler, network calls): the rows of the table
ROWS = [("ddpm", 1000), ("ddim", 50)] + [
    (s, c) for c in (10, 20) for s in ("euler", "heun", "dpmpp_2m")
]
QUICK_ROWS = [("ddpm", 20), ("ddim", 10), ("euler", 10), ("heun", 10), ("dpmpp_2m", 10)]


def parse_args() -> argparse.Namespace:
    p = study_parser(__spec__.name, __doc__)
    p.add_argument("--minutes", type=float, default=20.0, help="training budget per model")
    p.add_argument("--data", default=str(SHARED_DATA / "fashion_mnist"))
    p.add_argument("--out", default="outputs/image_benchmark")
    p.add_argument("--judge", help="trained judge folder (default: train one into --out)")
    p.add_argument("--judge-steps", type=int, default=2000)
    p.add_argument("--samples", type=int, default=1000, help="samples per row (same for all)")
    p.add_argument("--guidance", type=float, default=2.0, help="for the class-conditional rows")
    p.add_argument("--preset", default="fmnist")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--ema", type=float, help="EMA decay (default: window 10%% of the run)")
    p.add_argument("--precision", default="bf16", help="ours: autocast (bf16: AVX-512 BF16 CPUs)")
    p.add_argument("--peer-batch-size", type=int, default=16, help="the example's default")
    p.add_argument(
        "--peer-steps", type=int, help="train the peer this many steps (default: fit --minutes)"
    )
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="sample the models an earlier run left in --out (the peer is trained if missing)",
    )
    p.add_argument(
        "--keep-ours",
        action="store_true",
        help="with --reuse: take our rows from the earlier results.json (same seed and samples)",
    )
    p.add_argument("--quick", action="store_true", help="few-step rows, for a smoke test")
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--results",
        help="folder for the scored samples (samples.npz, uint8) and results.json "
        "(default: docs/results/image)",
    )
    return p.parse_args()


# Ours


def train_ours(args: argparse.Namespace, data, out: Path) -> tuple[ImagePipeline, dict]:
    model = build_model(
        args.preset,
        channels=1,
        image_size=data.size,
        num_classes=data.num_classes,
        class_names=data.class_names,
    )
    per_step = seconds_per_step(
        model, data, args.batch_size, device=args.device, precision=args.precision
    )
    steps = steps_for_budget(args.minutes * 60, per_step)
    config = TrainConfig(
        steps=steps,
        batch_size=args.batch_size,
        lr=args.lr,
        ema_decay=args.ema or default_ema_decay(steps),
        precision=args.precision,
        checkpoint_every=max(1, steps // 4),
        log_every=max(1, steps // 20),
        seed=args.seed,
    )
    start = time.perf_counter()
    result = train_model(
        model, data, config, out_dir=out / "ours", device=args.device, resume=False
    )
    seconds = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    info = {
        "parameters": params,
        "steps": steps,
        "batch": args.batch_size,
        "seconds": seconds,
        "model": str(result.final_model),
    }
    (out / "ours" / "info.json").write_text(json.dumps(info) + "\n")
    return ImagePipeline.from_pretrained(result.final_model, device=args.device), info


# The peer: diffusers' recipe


def peer_unet(target_params: int):
    """UNet2DModel in the example's shape (2 layers per block, attention at the second-lowest
    resolution) whose widths put its parameter count nearest ``target_params``."""
    from diffusers import UNet2DModel

    best = None
    for base in (32, 64, 96, 128):
        for widths in (
            (base, base, 2 * base),
            (base, 2 * base, 2 * base),
            (base, 2 * base, 3 * base),
        ):
            model = UNet2DModel(
                sample_size=32,
                in_channels=1,
                out_channels=1,
                layers_per_block=2,
                block_out_channels=widths,
                down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
            )
            params = sum(p.numel() for p in model.parameters())
            if best is None or abs(params - target_params) < abs(best[1] - target_params):
                best = (model, params, widths)
    return best


def pad32(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (2, 2, 2, 2), value=-1.0)


def train_peer(
    args: argparse.Namespace, data, target_params: int, out: Path
) -> tuple[torch.nn.Module, dict]:
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    torch.manual_seed(args.seed)
    model, params, widths = peer_unet(target_params)
    model.to(args.device).train()
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8
    )
    batch_size = args.peer_batch_size

    def step_loss(net, batch, _generator=None):
        x = pad32(batch["images"])
        x = torch.where(torch.rand(len(x), 1, 1, 1, device=x.device) < 0.5, x.flip(-1), x)
        noise = torch.randn_like(x)
        t = torch.randint(0, 1000, (len(x),), device=x.device)
        return F.mse_loss(net(scheduler.add_noise(x, noise, t), t).sample, noise)

    if args.peer_steps:  # a step count measured earlier, beside ours, on a quieter machine
        steps = args.peer_steps
    else:
        per_step = seconds_per_step(model, data, batch_size, loss=step_loss, device=args.device)
        steps = steps_for_budget(args.minutes * 60, per_step)
    lr_schedule = get_scheduler("cosine", optimizer, num_warmup_steps=500, num_training_steps=steps)
    ema = EMAModel(model.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=0.75)
    order = torch.Generator().manual_seed(args.seed)
    perm, cursor = torch.randperm(len(data), generator=order), 0
    start = time.perf_counter()
    for _ in tqdm(range(steps), desc="peer", unit="step"):
        if cursor + batch_size > len(data):
            perm, cursor = torch.randperm(len(data), generator=order), 0
        batch = {k: v.to(args.device) for k, v in data[perm[cursor : cursor + batch_size]].items()}
        cursor += batch_size
        loss = step_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        ema.step(model.parameters())
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    ema.copy_to(model.parameters())
    info = {
        "parameters": params,
        "steps": steps,
        "batch": batch_size,
        "seconds": seconds,
        "widths": list(widths),
    }
    model.save_pretrained(out / "peer", safe_serialization=True)  # sampling can be rerun alone
    (out / "peer" / "info.json").write_text(json.dumps(info) + "\n")
    return model.eval(), info


def load_peer(out: Path, device: str) -> tuple[torch.nn.Module, dict]:
    from diffusers import UNet2DModel

    model = UNet2DModel.from_pretrained(out / "peer", use_safetensors=True).to(device)
    return model.eval(), json.loads((out / "peer" / "info.json").read_text())


@torch.no_grad()
def sample_peer(model, sampler: str, calls: int, n: int, seed: int, device: str) -> torch.Tensor:
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
        HeunDiscreteScheduler,
    )

    kinds = {
        "ddpm": DDPMScheduler,
        "ddim": DDIMScheduler,
        "euler": EulerDiscreteScheduler,
        "heun": HeunDiscreteScheduler,
        "dpmpp_2m": DPMSolverMultistepScheduler,
    }
    options = {"algorithm_type": "dpmsolver++", "solver_order": 2} if sampler == "dpmpp_2m" else {}
    scheduler = kinds[sampler](num_train_timesteps=1000, **options)
    scheduler.set_timesteps(steps_for_calls(sampler, calls))
    generator = torch.Generator(device).manual_seed(seed)
    noise = {"generator": generator} if sampler == "ddpm" else {}
    out = []
    for start in range(0, n, 250):
        count = min(250, n - start)
        x = torch.randn(count, 1, 32, 32, generator=generator, device=device)
        x = x * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            eps = model(scheduler.scale_model_input(x, t), t).sample
            # Only DDPM draws noise; Heun's step takes no generator.
            x = scheduler.step(eps, t, x, **noise).prev_sample
        out.append(x[..., 2:30, 2:30].clamp(-1, 1).cpu())
    return torch.cat(out)


# The run


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = load_images(args.data, split="train", limit=args.limit)
    test = load_images(args.data, split="test")
    if args.reuse and not args.judge:
        args.judge = str(out / "judge" / "final")
    if args.judge:
        judge = load_judge(args.judge, device=args.device)
    else:
        config = TrainConfig(
            steps=args.judge_steps,
            batch_size=256,
            lr=4e-3,
            weight_decay=5e-4,
            ema_decay=None,
            checkpoint_every=500,
            log_every=50,
        )
        result = train_judge(train, out_dir=out / "judge", config=config, device=args.device)
        judge = load_judge(result.final_model, device=args.device)
    accuracy = judge_accuracy(judge, test)
    reference = judge_features(judge, test.images)
    real = score_samples(judge, train.images[: args.samples].float() / 127.5 - 1, reference)

    if args.reuse:  # sample and score the models a previous run with this --out trained
        ours_info = json.loads((out / "ours" / "info.json").read_text())
        ours = ImagePipeline.from_pretrained(ours_info["model"], device=args.device)
    else:
        ours, ours_info = train_ours(args, train, out)
    peer, peer_info = None, None
    if args.reuse and not args.skip_peer and (out / "peer" / "info.json").is_file():
        peer, peer_info = load_peer(out, args.device)
    elif not args.skip_peer:
        try:
            peer, peer_info = train_peer(args, train, ours_info["parameters"], out)
        except ImportError as err:
            print(f"peer skipped: {err} (install diffusers: uv sync --group benchmark)")

    earlier = kept_rows(out, args) if args.keep_ours else {}
    rows, results = QUICK_ROWS if args.quick else ROWS, []
    scored: dict[str, np.ndarray] = {}  # every row's samples as uint8 (N, 1, 28, 28)
    for sampler, calls in rows:
        steps = steps_for_calls(sampler, calls)
        used = network_calls(sampler, steps)
        if (sampler, used) in earlier:  # sampling is deterministic for a seed: same numbers
            row = {k: v for k, v in earlier[(sampler, used)].items() if not k.startswith("peer")}
        else:
            start = time.perf_counter()
            samples = ours.sample(
                args.samples, sampler=sampler, steps=steps, seed=args.seed, progress=True
            )
            ours_seconds = time.perf_counter() - start
            mine = score_samples(judge, samples, reference)
            scored[f"ours_{sampler}_{used}"] = to_uint8(samples).numpy()
            save_grid(samples[:100], out / f"ours_{sampler}_{used}.png", columns=10, scale=2)
            row = {
                "sampler": sampler,
                "calls": used,
                "ours_fid": mine.fid,
                "ours_kid": mine.kid,
                "ours_seconds": ours_seconds,
            }
        if peer is not None:
            start = time.perf_counter()
            theirs = sample_peer(peer, sampler, calls, args.samples, args.seed, args.device)
            row["peer_seconds"] = time.perf_counter() - start
            report = score_samples(judge, theirs, reference)
            row["peer_fid"], row["peer_kid"] = report.fid, report.kid
            scored[f"peer_{sampler}_{used}"] = to_uint8(theirs).numpy()
            save_grid(theirs[:100], out / f"peer_{sampler}_{used}.png", columns=10, scale=2)
        results.append(row)
        print(json.dumps(row), flush=True)

    guided = earlier.get("guided", [])
    for sampler, calls in () if guided else (("dpmpp_2m", 10), ("dpmpp_2m", 20)):
        labels = torch.arange(args.samples) % ours.model.num_classes
        samples = ours.sample(
            args.samples,
            labels=labels,
            guidance=args.guidance,
            sampler=sampler,
            steps=steps_for_calls(sampler, calls),
            seed=args.seed,
        )
        report = score_samples(judge, samples, reference, labels=labels)
        guided.append(
            {
                "sampler": sampler,
                "calls": calls,
                "fid": report.fid,
                "kid": report.kid,
                "accuracy": report.accuracy,
            }
        )
        scored[f"ours_guided_{sampler}_{calls}"] = to_uint8(samples).numpy()
        scored[f"ours_guided_{sampler}_{calls}_labels"] = labels.numpy()
        save_grid(samples[:100], out / f"ours_guided_{sampler}_{calls}.png", columns=10, scale=2)

    summary = {
        "date": str(date.today()),
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "device": args.device,
        "minutes": args.minutes,
        "samples": args.samples,
        "seed": args.seed,
        "judge_accuracy": accuracy,
        "real_fid": real.fid,
        "ours": ours_info,
        "peer": peer_info,
        "rows": results,
        "guided": guided,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = format_table(summary)
    (out / "table.md").write_text(table + "\n")
    print(table)
    if scored:  # rows kept from an earlier run were scored then, with their own samples
        folder = results_dir("image", args.results)
        np.savez_compressed(folder / "samples.npz", **scored)
        figures = {
            k: v
            for k, v in summary.items()
            if k in ("judge_accuracy", "real_fid", "rows", "guided")
        }
        settings = {k: summary[k] for k in ("minutes", "samples", "seed", "device", "ours", "peer")}
        path = write_results(
            folder,
            figures=figures,
            precision=args.precision,
            device=str(args.device),
            samples=["samples.npz"],
            settings=settings,
        )
        print(f"results: {path}")


def kept_rows(out: Path, args: argparse.Namespace) -> dict:
    """Our rows (and guided rows) from an earlier run in --out, keyed by (sampler, calls)."""
    path = out / "results.json"
    if not args.reuse or not path.is_file():
        raise SystemExit(f"--keep-ours needs --reuse and an earlier {path}")
    earlier = json.loads(path.read_text())
    if (earlier["samples"], earlier.get("seed", 0)) != (args.samples, args.seed):
        raise SystemExit(
            f"{path}: made with {earlier['samples']} samples, seed {earlier.get('seed', 0)};"
            f" this run asks for {args.samples}, seed {args.seed}"
        )
    kept = {(r["sampler"], r["calls"]): r for r in earlier["rows"]}
    return {**kept, "guided": earlier["guided"]}


def format_table(s: dict) -> str:
    peer = s["peer"]
    lines = [
        f"# image benchmark, {s['date']}, {s['machine']}, {s['threads']} threads, "
        f"device {s['device']}, budget {s['minutes']:g} min per model, {s['samples']} samples",
        f"judge test accuracy {s['judge_accuracy']:.4f}; FID of {s['samples']} real training images "
        f"{s['real_fid']:.3f}",
        f"ours: {s['ours']['parameters'] / 1e6:.2f} M parameters, {s['ours']['steps']} steps x "
        f"batch {s['ours']['batch']}"
        + (
            f"; peer: {peer['parameters'] / 1e6:.2f} M parameters {peer['widths']}, "
            f"{peer['steps']} steps x batch {peer['batch']}"
            if peer
            else "; peer: not run"
        ),
        "",
        "| sampler | network calls | FID ours | FID peer | ours / peer | KID ours | KID peer |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in s["rows"]:
        p_fid, p_kid = r.get("peer_fid", math.nan), r.get("peer_kid", math.nan)
        lines.append(
            f"| {r['sampler']} | {r['calls']} | {r['ours_fid']:.3f} | {p_fid:.3f} | "
            f"{r['ours_fid'] / p_fid:.2f} | {r['ours_kid']:.4f} | {p_kid:.4f} |"
        )
    lines += [
        "",
        "| ours, guided | network calls | FID | KID | judge accuracy |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for g in s["guided"]:
        lines.append(
            f"| {g['sampler']} | {g['calls']} | {g['fid']:.3f} | {g['kid']:.4f} | {g['accuracy']:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
