"""The 2-D toy study: every continuous sampler, fed the exact denoiser of a Gaussian mixture.

With the ideal denoiser, the only error left is the sampler's own discretization error, so the
distance between its samples and exact samples measures the sampler alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from diffcore.generation import network_calls, steps_for_calls
from diffcore.metrics import sliced_wasserstein
from diffcore.samplers import SAMPLERS, fit_grid
from diffcore.schedules import karras_grid
from diffcore.toys import GaussianMixture, uneven_mixture


@dataclass(frozen=True)
class StudyRow:
    sampler: str
    network_calls: int
    steps: int
    distance: float
    ms_per_call: float
    grid: str = "karras"


class _Counter:
    def __init__(self, denoiser):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.denoiser(x, sigma)


def sampler_study(
    mixture: GaussianMixture | None = None,
    *,
    samplers: Sequence[str] = tuple(SAMPLERS),
    calls: Sequence[int] = (10, 20, 50),
    n: int = 4000,
    seed: int = 0,
    sigma_min: float = 0.002,
    sigma_max: float = 20.0,
    fitted: Sequence[str] = (),
    fit_below: int = 20,
) -> tuple[list[StudyRow], dict[tuple[str, int], torch.Tensor], float]:
    """Sample the mixture with each sampler at each budget of network calls (Karras grid), and
    with each of ``fitted`` at budgets under ``fit_below`` on a grid fitted to other noise
    draws (``diffcore.samplers.fit_grid``; samples keyed "<sampler>_fitted").

    Returns the rows, the samples by (sampler, calls), and the noise floor: the distance between
    two independent sets of exact samples (what a perfect sampler would score).
    """
    mixture = mixture or uneven_mixture()
    reference = mixture.sample(n, torch.Generator().manual_seed(seed + 1))
    distance = lambda s: sliced_wasserstein(
        s, reference, projections=256, generator=torch.Generator().manual_seed(seed + 2)
    )
    floor = distance(mixture.sample(n, torch.Generator().manual_seed(seed + 3)))
    noise = torch.randn(
        n, mixture.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    rows, samples = [], {}
    for name in samplers:
        for budget in calls:
            steps = steps_for_calls(name, budget)
            counter = _Counter(mixture)
            start = time.perf_counter()
            out = SAMPLERS[name](
                counter,
                noise,
                karras_grid(steps, sigma_min, sigma_max),
                generator=torch.Generator().manual_seed(seed + 4),
            )
            elapsed = time.perf_counter() - start
            samples[(name, budget)] = out
            rows.append(
                StudyRow(name, counter.calls, steps, distance(out), 1e3 * elapsed / counter.calls)
            )
    fit_noise = torch.randn(
        2000, mixture.dim, generator=torch.Generator().manual_seed(seed + 5), dtype=torch.float64
    )
    for name in fitted:
        for budget in (c for c in calls if c < fit_below):
            steps = steps_for_calls(name, budget)
            grid = fit_grid(
                mixture, fit_noise, name, steps, sigma_min=sigma_min, sigma_max=sigma_max
            )
            counter = _Counter(mixture)
            start = time.perf_counter()
            out = SAMPLERS[name](
                counter, noise, grid, generator=torch.Generator().manual_seed(seed + 4)
            )
            elapsed = time.perf_counter() - start
            samples[(f"{name}_fitted", budget)] = out
            ms = 1e3 * elapsed / counter.calls
            rows.append(StudyRow(name, counter.calls, steps, distance(out), ms, "fitted"))
    return rows, samples, floor


def format_table(rows: Sequence[StudyRow], floor: float) -> str:
    """Markdown table: sampler x network calls -> distance to the exact mixture."""
    lines = [
        "| sampler | network calls | steps | sliced W2 to exact samples | ms per call |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.sampler}{'' if r.grid == 'karras' else f', {r.grid} grid'} | {r.network_calls} | "
        f"{r.steps} | {r.distance:.4f} | {r.ms_per_call:.2f} |"
        for r in rows
    ]
    lines.append(f"| exact samples (noise floor) | - | - | {floor:.4f} | - |")
    return "\n".join(lines)


def plot_samples(
    samples: dict[tuple[str, int], torch.Tensor], exact: torch.Tensor, calls: int, path: Path
) -> Path:
    """One scatter plot per sampler at ``calls`` network calls, beside exact samples; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("exact", exact)] + [(name, s) for (name, c), s in samples.items() if c == calls]
    cols = 4
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (name, pts) in zip(axes.flat, panels, strict=False):
        ax.scatter(
            pts[:, 0], pts[:, 1], s=1, alpha=0.4, color="black" if name == "exact" else "tab:blue"
        )
        spent = network_calls(name, steps_for_calls(name, calls))
        ax.set_title(name if name == "exact" else f"{name}, {spent} calls", fontsize=10)
        ax.set_xlim(-3, 3)
        ax.set_ylim(-2.5, 3)
        ax.set_aspect("equal")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_demo(
    out_dir: Path, *, n: int = 4000, calls: Sequence[int] = (10, 20, 50), seed: int = 0
) -> str:
    """The `diffuse demo` job: the study, a printed table and a PNG of samples per sampler."""
    mixture = uneven_mixture()
    rows, samples, floor = sampler_study(mixture, calls=calls, n=n, seed=seed)
    exact = mixture.sample(n, torch.Generator().manual_seed(seed + 1))
    picture = plot_samples(samples, exact, calls[0], out_dir / "samples.png")
    table = format_table(rows, floor)
    (out_dir / "table.md").write_text(table + "\n")
    return f"{table}\n\nwrote {picture} and {out_dir / 'table.md'}"
