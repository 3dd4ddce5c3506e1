"""Distances between two sets of samples or features, in torch (float64), no scipy.

a, b: (N, D) arrays of feature vectors (Inception/CLAP/ESM embeddings, or raw 2-D points in the
sampler tests). Every function checks its inputs and returns plain Python floats.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _as_features(x: Tensor, name: str, *, min_rows: int) -> Tensor:
    """Validate one (N, D) feature array and return it as float64."""
    x = torch.as_tensor(x)
    if x.dtype.is_complex or x.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (N, D) array of features, got shape {tuple(x.shape)}"
        )
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} samples (rows), got {x.shape[0]}")
    if x.shape[1] < 1:
        raise ValueError(
            f"{name} must have at least one feature column, got shape {tuple(x.shape)}"
        )
    x = x.to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _pair(a: Tensor, b: Tensor, *, min_rows: int) -> tuple[Tensor, Tensor]:
    """Validate two feature arrays with the same feature size, on the same device."""
    a = _as_features(a, "a", min_rows=min_rows)
    b = _as_features(b, "b", min_rows=min_rows).to(a.device)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a and b must have the same feature size, got a: {tuple(a.shape)}, b: {tuple(b.shape)}"
        )
    return a, b


def _sqrt_psd(m: Tensor) -> Tensor:
    """Symmetric square root of a positive semi-definite matrix through its eigendecomposition;
    eigenvalues that rounding pushed slightly below zero are clamped to zero."""
    eigvals, eigvecs = torch.linalg.eigh((m + m.T) / 2)
    return (eigvecs * eigvals.clamp_min(0).sqrt()) @ eigvecs.T


def frechet_distance_from_stats(mu_a: Tensor, cov_a: Tensor, mu_b: Tensor, cov_b: Tensor) -> float:
    """Fréchet (2-Wasserstein²) distance between N(mu_a, cov_a) and N(mu_b, cov_b).

    d² = |mu_a - mu_b|² + tr(S_a) + tr(S_b) - 2 tr((S_a^½ S_b S_a^½)^½)  (Dowson & Landau 1982;
    FID, Heusel et al. 2017, https://arxiv.org/abs/1706.08500). mu: (D,), cov: (D, D). Using the
    symmetric form S_a^½ S_b S_a^½ keeps the eigenvalues real (unlike sqrtm(S_a S_b)).
    """
    mu_a, mu_b = (torch.as_tensor(m).to(torch.float64) for m in (mu_a, mu_b))
    cov_a, cov_b = (torch.as_tensor(c).to(torch.float64) for c in (cov_a, cov_b))
    if mu_a.ndim != 1 or mu_a.shape != mu_b.shape:
        raise ValueError(
            f"means must be two (D,) vectors of one size, got {tuple(mu_a.shape)} and "
            f"{tuple(mu_b.shape)}"
        )
    dim = mu_a.shape[0]
    for name, cov in (("cov_a", cov_a), ("cov_b", cov_b)):
        if cov.shape != (dim, dim):
            raise ValueError(
                f"{name} must be ({dim}, {dim}) to match the means, got {tuple(cov.shape)}"
            )
    cov_b, mu_b = cov_b.to(cov_a.device), mu_b.to(mu_a.device)
    root_a = _sqrt_psd(cov_a)
    cross = root_a @ cov_b @ root_a
    trace_sqrt = torch.linalg.eigvalsh((cross + cross.T) / 2).clamp_min(0).sqrt().sum()
    distance = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return max(float(distance), 0.0)  # identical inputs can round to -1e-13


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to a: (N, D) and b: (M, D) (unbiased covariance)."""
    a, b = _pair(a, b, min_rows=2)
    return frechet_distance_from_stats(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


def _polynomial_kernel(x: Tensor, y: Tensor) -> Tensor:
    """k(x, y) = (x·y / D + 1)^3, the KID kernel: (N, D), (M, D) -> (N, M)."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def _unbiased_mmd2(k_xx: Tensor, k_yy: Tensor, k_xy: Tensor) -> Tensor:
    """Unbiased MMD² from kernel matrices (Gretton et al. 2012, eq. 3): the within-set averages
    leave out the diagonal k(x_i, x_i), which is what makes the estimate unbiased."""
    m, n = k_xx.shape[0], k_yy.shape[0]
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return within_x + within_y - 2 * k_xy.mean()


def kernel_distance(
    a: Tensor,
    b: Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018, https://arxiv.org/abs/1801.01401).

    The unbiased MMD² with the cubic polynomial kernel, computed on ``subsets`` random subsets of
    ``subset_size`` rows of each set (drawn without replacement, capped at min(len(a), len(b))).
    a: (N, D), b: (M, D). Returns (mean, std) of the per-subset estimates; the mean is unbiased,
    so it can be slightly negative when the two distributions are equal.
    ``generator`` (a CPU generator) makes the subsets reproducible.
    """
    a, b = _pair(a, b, min_rows=2)
    if subsets < 2:
        raise ValueError(f"kernel_distance needs subsets >= 2 to report a std, got {subsets}")
    if subset_size < 2:
        raise ValueError(f"kernel_distance needs subset_size >= 2, got {subset_size}")
    size = min(subset_size, a.shape[0], b.shape[0])
    estimates = []
    for _ in range(subsets):
        x = a[torch.randperm(a.shape[0], generator=generator)[:size].to(a.device)]
        y = b[torch.randperm(b.shape[0], generator=generator)[:size].to(b.device)]
        k_xx, k_yy, k_xy = (_polynomial_kernel(*p) for p in ((x, x), (y, y), (x, y)))
        estimates.append(_unbiased_mmd2(k_xx, k_yy, k_xy))
    values = torch.stack(estimates)
    return float(values.mean()), float(values.std())


def sliced_wasserstein(
    a: Tensor, b: Tensor, *, projections: int = 256, generator: torch.Generator | None = None
) -> float:
    """Sliced 2-Wasserstein distance between two equally sized point clouds a, b: (N, D).

    SW_2 = (E_theta W_2²(theta·a, theta·b))^½ over random unit directions theta
    (Rabin et al. 2011; Bonneel et al. 2015). In one dimension the optimal coupling of two
    equally sized samples pairs their sorted values, so W_2² is the mean squared difference of
    the sorted projections. ``generator`` (a CPU generator) fixes the directions.
    """
    a, b = _pair(a, b, min_rows=1)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"sliced_wasserstein needs equally sized point clouds, got {a.shape[0]} and {b.shape[0]}"
        )
    if projections < 1:
        raise ValueError(f"sliced_wasserstein needs projections >= 1, got {projections}")
    directions = torch.randn(a.shape[1], projections, generator=generator, dtype=torch.float64)
    directions = (directions / directions.norm(dim=0, keepdim=True)).to(a.device)  # (D, P)
    proj_a = (a @ directions).sort(dim=0).values  # (N, P)
    proj_b = (b @ directions).sort(dim=0).values
    return float((proj_a - proj_b).square().mean().sqrt())


def mmd_rbf(
    a: Tensor, b: Tensor, *, bandwidths: Sequence[float] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
) -> float:
    """Unbiased MMD² with a sum of Gaussian (RBF) kernels (Gretton et al. 2012).

    k(x, y) = sum_h exp(-|x - y|² / (2 h²)) over ``bandwidths`` h; several bandwidths keep the
    test sensitive at several length scales without tuning one. a: (N, D), b: (M, D), N, M >= 2.
    Suited to low-dimensional samples (e.g. 2-D toy data): memory is O((N + M)²).
    """
    a, b = _pair(a, b, min_rows=2)
    if not bandwidths or any(h <= 0 for h in bandwidths):
        raise ValueError(f"mmd_rbf needs positive bandwidths, got {tuple(bandwidths)}")
    widths = torch.as_tensor(tuple(bandwidths), dtype=torch.float64, device=a.device)

    def kernel(x: Tensor, y: Tensor) -> Tensor:
        sq = torch.cdist(x, y).square()  # (N, M)
        return torch.exp(-sq[..., None] / (2 * widths**2)).sum(-1)

    return float(_unbiased_mmd2(kernel(a, a), kernel(b, b), kernel(a, b)))
