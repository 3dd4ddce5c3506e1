"""Sampler study: sampler x network calls -> distance to the true 2-D mixture, and time per call.

Every sampler is fed the exact denoiser of a Gaussian mixture (diffcore.toys), so the distance
measures discretization error alone. Below 20 calls, --fitted samplers also run on grids fitted
to 2,000 other noise draws (``diffcore.samplers.fit_grid``). Prints a markdown table (the one in docs/benchmarks.md) and
writes ``results.json`` plus the samples (``samples.npz``, float16 points by sampler and calls)
to ``docs/results/cross_domain/sampler_study/``.

    uv run python -m research.cross_domain.sampler_study [--calls 5,10,20,50,100,200] [--n 8000]
"""

from __future__ import annotations

import platform
from datetime import date

import numpy as np
import torch

from diffuse.demo import format_table, sampler_study
from research._results import RESULTS, results_dir, write_results
from research._utils import study_parser


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument("--calls", default="5,10,20,50,100,200")
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fitted",
        default="dpmpp_2m,dpmpp_3m,unipc",
        help="samplers also run on grids fitted to other noise draws (below 20 calls)",
    )
    parser.add_argument(
        "--results",
        default=RESULTS / "cross_domain" / "sampler_study",
        help="folder for samples.npz and results.json",
    )
    args = parser.parse_args()
    calls = tuple(int(c) for c in args.calls.split(","))
    torch.set_num_threads(max(1, torch.get_num_threads()))
    fitted = tuple(s for s in args.fitted.split(",") if s)
    rows, samples, floor = sampler_study(calls=calls, n=args.n, seed=args.seed, fitted=fitted)
    print(
        f"# sampler study, {date.today()}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, n={args.n}"
    )
    print(format_table(sorted(rows, key=lambda r: (r.network_calls, r.sampler, r.grid)), floor))
    folder = results_dir("cross_domain", args.results)
    # float16 points: a tenth of the noise floor's scale is far above their rounding
    arrays = {f"{name}_{calls}": x.half().numpy() for (name, calls), x in samples.items()}
    np.savez_compressed(folder / "samples.npz", **arrays)
    figures = {
        "noise_floor": floor,
        "rows": [
            {
                "sampler": r.sampler,
                "network_calls": r.network_calls,
                "steps": r.steps,
                "sliced_w2": r.distance,
                "ms_per_call": r.ms_per_call,
                "grid": r.grid,
            }
            for r in rows
        ],
    }
    settings = {"calls": calls, "n": args.n, "seed": args.seed, "grid": "karras 0.002..20"}
    settings["fitted"] = "fit_grid on 2,000 other draws, 4 sweeps, reference DPM-Solver++(2M) x200"
    path = write_results(
        folder, figures=figures, precision="fp64", samples=["samples.npz"], settings=settings
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
