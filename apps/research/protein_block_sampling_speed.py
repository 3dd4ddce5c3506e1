"""Time block-by-block protein sampling with and without leaving out the later blocks.

A block-diffusion denoiser's sampling pass skips the residues after the block being drawn
(``skip_later_blocks``: exact under block-causal attention). This script draws the same
samples both ways, side by side and alternating, checks that they are identical, and prints
the seconds of each and their ratio.

    uv run python apps/research/protein_block_sampling_speed.py --block 4 --length 160 -n 8
    uv run python apps/research/protein_block_sampling_speed.py --model OUT/denoiser_block4/final
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from typing import Any

import torch

from diffcore.io import from_pretrained
from diffprotein.model import ProteinDenoiser, ProteinDenoiserConfig, load_preset
from diffprotein.sampling import SamplingConfig, sample


def full_passes(model: ProteinDenoiser) -> None:
    """Make ``model`` ignore ``skip_later_blocks``: every pass runs the whole sequence."""

    def forward(*args: Any, skip_later_blocks: bool = False, **kwargs: Any) -> torch.Tensor:
        return ProteinDenoiser.forward(model, *args, **kwargs)

    model.forward = forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a trained block model's folder (default: untrained)")
    parser.add_argument("--preset", default="small", help="shape of the untrained model")
    parser.add_argument("--block", type=int, default=4, help="residues per block (untrained)")
    parser.add_argument("--length", type=int, default=160, help="residues per sample")
    parser.add_argument("-n", type=int, default=8, help="samples per timing")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    if args.model:
        models = [from_pretrained(ProteinDenoiser, args.model) for _ in range(2)]
    else:
        config = ProteinDenoiserConfig(
            **load_preset(args.preset), families=("a",), diffusion_block=args.block
        )
        models = []
        for _ in range(2):
            torch.manual_seed(0)
            models.append(ProteinDenoiser(config))
    skipping, full = (m.eval() for m in models)
    if skipping.config.diffusion_block is None:
        parser.error(f"{args.model} is not a block-diffusion model")
    full_passes(full)
    family = (skipping.config.families or (None,))[0]
    config = SamplingConfig(sampler="confidence")
    print(
        f"# {date.today()}, {platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; {args.n} samples of "
        f"{args.length} residues, blocks of {skipping.config.diffusion_block}, one step per residue"
    )
    seconds: dict[str, list[float]] = {"skip later blocks": [], "whole sequence": []}
    drawn: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for (name, times), model in zip(seconds.items(), (skipping, full), strict=True):
            t0 = time.perf_counter()
            out = sample(model, args.n, family=family, length=args.length, config=config,
                         seed=0, progress=False)  # fmt: skip
            times.append(time.perf_counter() - t0)
            drawn[name] = [s.sequence for s in out]
    same = drawn["skip later blocks"] == drawn["whole sequence"]
    print("| pass | best s | samples |\n|---|---:|---|")
    for name, times in seconds.items():
        print(f"| {name} | {min(times):.2f} | {'identical' if same else 'DIFFERENT'} |")
    ratio = min(seconds["whole sequence"]) / min(seconds["skip later blocks"])
    print(f"speed-up: {ratio:.2f}x")


if __name__ == "__main__":
    main()
