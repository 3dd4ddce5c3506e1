"""Screen training choices for the text diffusion model: which one learns fastest per step.

Trains the same diffusion model (same initialization, same batches) once per variant, a grid of
ELBO estimator (see ``diffcore.processes.MaskProcess``) x learning rate x AdamW beta2 x batch
size, each for the same number of steps, and prints the validation NLL bound of each. A screen
ranks choices for the 30-minute benchmark (``research.text.benchmark``) in minutes, not hours.

    uv run python -m research.text.training_screen --steps 600 --estimators count,time --lrs 2e-3
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch

from diffcore.training import TrainConfig, default_ema_decay
from difftext.data import load_documents, make_blocks, split_tail
from difftext.tokenizer import train_char_tokenizer
from difftext.training import build_model, fit
from research._utils import SHARED_DATA, study_parser

DEFAULT_DATA = SHARED_DATA / "tinyshakespeare" / "input.txt"


def parse_args() -> argparse.Namespace:
    p = study_parser(__spec__.name, __doc__)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Tiny Shakespeare input.txt")
    p.add_argument("--steps", type=int, default=600, help="optimizer steps per variant")
    p.add_argument("--estimators", default="count,time", help="ELBO estimators to compare")
    p.add_argument("--lrs", default="2e-3", help="peak learning rates to compare")
    p.add_argument("--beta2s", default="0.999", help="AdamW second-moment decays to compare")
    p.add_argument(
        "--batch-sizes",
        default="32",
        help="batch sizes to compare (the complementary estimator runs each row twice)",
    )
    p.add_argument("--preset", default="small", help="shape in shared/presets/text.json")
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--precision", default="auto", help="autocast: auto, fp32, bf16 or fp16")
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    p.add_argument("--val-blocks", type=int, default=128, help="validation blocks scored")
    p.add_argument("--mc-samples", type=int, default=16, help="mask draws per block (bound)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("outputs/text_training_screen"))
    return p.parse_args()


def main() -> None:
    args = parse_args()
    docs = load_documents(args.data)
    train_docs, val_docs = split_tail(docs, 0.1)
    tokenizer = train_char_tokenizer(d.text for d in train_docs)
    train_blocks = make_blocks(tokenizer, train_docs, args.block_size)
    val_blocks = make_blocks(tokenizer, val_docs, args.block_size).subset(slice(0, args.val_blocks))
    grid = [
        (estimator, float(lr), float(beta2), int(batch))
        for estimator in args.estimators.split(",")
        for lr in args.lrs.split(",")
        for beta2 in args.beta2s.split(",")
        for batch in args.batch_sizes.split(",")
    ]
    rows = []
    for estimator, lr, beta2, batch in grid:
        name = f"{estimator}_lr{lr:g}_beta{beta2:g}_b{batch}"
        model = build_model(
            "diffusion", tokenizer, args.block_size, preset=args.preset, seed=args.seed
        )
        config = TrainConfig(
            steps=args.steps,
            batch_size=batch,
            lr=lr,
            betas=(0.9, beta2),
            warmup=0.05,
            log_every=25,
            checkpoint_every=args.steps,
            seed=args.seed,
            precision=args.precision,
            compile=args.compile,
            ema_decay=default_ema_decay(args.steps, max_decay=0.999),
        )
        began = time.perf_counter()
        result = fit(
            model,
            train_blocks,
            config,
            args.out / name,
            val_blocks=val_blocks,
            final_samples=args.mc_samples,
            estimator=estimator,
            progress=False,
        )
        tail = [r.loss for r in result.log[-8:]]
        row = {
            "estimator": estimator,
            "lr": lr,
            "beta2": beta2,
            "batch": batch,
            "steps": args.steps,
            "seconds": time.perf_counter() - began,
            "train_loss_tail": sum(tail) / len(tail),
            "val_bits_per_char": result.final.bits_per_char,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [
        f"# text training screen, {date.today()}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, preset {args.preset}, {args.steps} steps, "
        f"{args.precision}, {len(val_blocks)} validation blocks x {args.mc_samples} mask draws",
        "",
        "| estimator | lr | beta2 | batch | seconds | train loss (nats, last 8 logs) "
        "| val bits/char (bound) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['estimator']} | {r['lr']:g} | {r['beta2']:g} | {r['batch']} | {r['seconds']:.0f} | "
            f"{r['train_loss_tail']:.4f} | {r['val_bits_per_char']:.4f} |"
        )
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
