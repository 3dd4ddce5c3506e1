"""Sampler study: sampler x network calls -> distance to the true 2-D mixture, and time per call.

Every sampler is fed the exact denoiser of a Gaussian mixture (diffcore.toys), so the distance
measures discretization error alone. Prints a markdown table (the one in docs/benchmarks.md).

    uv run python -m research.cross_domain.sampler_study [--calls 5,10,20,50,100,200] [--n 8000]
"""

from __future__ import annotations

import platform
from datetime import date

import torch

from diffuse.demo import format_table, sampler_study
from research._utils import study_parser


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument("--calls", default="5,10,20,50,100,200")
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    calls = tuple(int(c) for c in args.calls.split(","))
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows, _, floor = sampler_study(calls=calls, n=args.n, seed=args.seed)
    print(
        f"# sampler study, {date.today()}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, n={args.n}"
    )
    print(format_table(sorted(rows, key=lambda r: (r.network_calls, r.sampler)), floor))


if __name__ == "__main__":
    main()
