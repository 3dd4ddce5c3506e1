"""Distances between sets of samples or features: Fréchet distance, KID, sliced Wasserstein, MMD.

Inputs are feature arrays (N, D); everything is computed in float64 with torch alone.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _features(a: Tensor, b: Tensor, minimum: int = 2) -> tuple[Tensor, Tensor]:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(
            f"expected feature arrays (N, D), got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} and {b.shape[1]}")
    if min(len(a), len(b)) < minimum:
        raise ValueError(f"need at least {minimum} samples in each set, got {len(a)} and {len(b)}")
    return a.double(), b.double()


def _sqrtm_psd(m: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(m)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance_from_stats(mu_a: Tensor, cov_a: Tensor, mu_b: Tensor, cov_b: Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2) (Dowson & Landau 1982).

    The symmetric form makes the trace term an eigenvalue sum of a PSD matrix, which is stable
    where the usual sqrtm(C_a C_b) of FID code is not.
    """
    mu_a, cov_a, mu_b, cov_b = (t.double() for t in (mu_a, cov_a, mu_b, cov_b))
    root_a = _sqrtm_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    value = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * trace_root
    return float(value.clamp(min=0))


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to features a (N, D) and b (M, D) (FID's formula)."""
    a, b = _features(a, b)
    return frechet_distance_from_stats(
        a.mean(0),
        torch.cov(a.T).reshape(a.shape[1], -1),
        b.mean(0),
        torch.cov(b.T).reshape(b.shape[1], -1),
    )


def _polynomial_mmd2(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD^2 with k(u, v) = (u.v / D + 1)^3."""
    dim, m = x.shape[1], x.shape[0]
    kxx = (x @ x.T / dim + 1) ** 3
    kyy = (y @ y.T / dim + 1) ** 3
    kxy = (x @ y.T / dim + 1) ** 3
    off = lambda k: (k.sum() - k.diagonal().sum()) / (m * (m - 1))
    return off(kxx) + off(kyy) - 2 * kxy.mean()


def kernel_distance(
    a: Tensor,
    b: Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018, https://arxiv.org/abs/1801.01401):
    unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets (blocks), so
    memory stays O(subset_size^2). Returns (mean, std over subsets)."""
    a, b = _features(a, b)
    size = min(subset_size, len(a), len(b))
    values = []
    for _ in range(subsets):
        ia = torch.randperm(len(a), generator=generator)[:size]
        ib = torch.randperm(len(b), generator=generator)[:size]
        values.append(_polynomial_mmd2(a[ia], b[ib]))
    v = torch.stack(values)
    return float(v.mean()), float(v.std()) if subsets > 1 else 0.0


def sliced_wasserstein(
    a: Tensor, b: Tensor, *, projections: int = 256, generator: torch.Generator | None = None
) -> float:
    """Sliced 2-Wasserstein distance between equally sized point clouds a, b (N, D): the root mean
    over random unit directions of the 1-D W2 between projections (sorted differences)."""
    a, b = _features(a, b, minimum=1)
    if len(a) != len(b):
        raise ValueError(f"sliced_wasserstein needs equally sized sets, got {len(a)} and {len(b)}")
    directions = torch.randn(a.shape[1], projections, generator=generator, dtype=torch.float64)
    directions = directions / directions.norm(dim=0, keepdim=True)
    pa, pb = (a @ directions).sort(0).values, (b @ directions).sort(0).values
    return float((pa - pb).pow(2).mean().sqrt())


def mmd_rbf(a: Tensor, b: Tensor, *, bandwidths: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)) -> float:
    """Unbiased squared MMD with a sum of Gaussian kernels exp(-|u - v|^2 / (2 h^2)) over
    ``bandwidths`` (Gretton et al. 2012)."""
    a, b = _features(a, b)

    def k(x: Tensor, y: Tensor) -> Tensor:
        d2 = torch.cdist(x, y).pow(2)
        return sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)

    off = lambda m: (m.sum() - m.diagonal().sum()) / (len(m) * (len(m) - 1))
    return float(off(k(a, a)) + off(k(b, b)) - 2 * k(a, b).mean())
