"""Small helpers shared across diffcore."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def per_sample(coef: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample coefficient (B,) to broadcast against x (B, ...), in x's dtype/device."""
    return coef.reshape(-1, *([1] * (x.ndim - 1))).to(device=x.device, dtype=x.dtype)


def stratified_time(
    batch: int, generator: torch.Generator | None, device: torch.device | str, lo: float, hi: float
) -> Tensor:
    """One uniform draw per stratum of [lo, hi] (a random offset shared by the batch), shuffled:
    uniform marginally, with lower loss variance than i.i.d. draws (Kingma et al. 2021)."""
    offset = torch.rand((), generator=generator, device=device, dtype=torch.float64)
    u = (torch.arange(batch, device=device, dtype=torch.float64) + offset) / batch
    u = u[torch.randperm(batch, generator=generator, device=device)]
    return lo + (hi - lo) * u


def grid_levels(schedule: Tensor, *, var: str, upper: float | None = None) -> list[float]:
    """A sampler's grid as Python floats, checked: 1-D with at least 2 levels, strictly
    decreasing, ending at exactly 0, starting at most at ``upper``. ``var`` names the level in
    messages ("sigma", "t", "severity")."""
    schedule = torch.as_tensor(schedule)
    if schedule.ndim != 1 or schedule.numel() < 2:
        raise ValueError(
            f"the grid must be a 1-D tensor of at least 2 {var} levels, got shape "
            f"{tuple(schedule.shape)}"
        )
    levels = schedule.detach().double().cpu().tolist()
    if levels[-1] != 0.0:
        raise ValueError(f"a sampling grid must end at {var} = 0, got {levels[-1]}")
    if levels[0] <= 0 or any(b >= a for a, b in zip(levels, levels[1:], strict=False)):
        raise ValueError(f"the {var} grid must decrease strictly, got {levels[:5]}...")
    if upper is not None and levels[0] > upper:
        raise ValueError(
            f"the grid must decrease strictly from {var} <= {upper:g} to 0 (values in [0, {upper:g}]), "
            f"it starts at {levels[0]}"
        )
    return levels


def like(name: str, t: Tensor, x: Tensor) -> Tensor:
    """``t`` on x's device and dtype, after checking it has x's shape."""
    if t.shape != x.shape:
        raise ValueError(f"{name} must be shaped like x {tuple(x.shape)}, got {tuple(t.shape)}")
    return t.to(device=x.device, dtype=x.dtype)


def check_tiling(ranges: Sequence[tuple[float, float]], *, low: float = 0.0) -> None:
    """Raise ValueError unless ``ranges`` (sorted by their start) tile [0, 1] one after
    another: the first starts at most at ``low``, the last ends at 1, no gaps (experts per
    noise level must cover every level between them)."""
    gaps = [(a, b) for (_, a), (b, _) in zip(ranges, ranges[1:], strict=False) if abs(a - b) > 1e-9]
    if ranges[0][0] > low or ranges[-1][1] != 1.0 or gaps:
        raise ValueError(
            f"experts must split the times [0, 1] between them, one range after another; "
            f"their ranges are {[tuple(r) for r in ranges]} (give the other experts with the model)"
        )
