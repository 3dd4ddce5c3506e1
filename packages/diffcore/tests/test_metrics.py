"""Sample-set distances checked against closed forms: Fréchet distance of Gaussians, the exact
1-D Wasserstein distance, brute-force MMD estimators, and the unbiasedness of KID."""

import math

import pytest
import torch

from diffcore.metrics import (
    frechet_distance,
    frechet_distance_from_stats,
    kernel_distance,
    mmd_rbf,
    sliced_wasserstein,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def with_exact_stats(n: int, mean: torch.Tensor, cov: torch.Tensor, seed: int) -> torch.Tensor:
    """n samples whose sample mean and (unbiased) sample covariance are exactly mean and cov:
    whiten random draws with their own Cholesky factor, then colour them with cov's."""
    z = torch.randn(n, mean.shape[0], generator=gen(seed), dtype=torch.float64)
    z = z - z.mean(0)
    white = z @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(z.T))).T
    return white @ torch.linalg.cholesky(cov).T + mean


def rotation(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


# ---- Fréchet distance --------------------------------------------------------------------------


def test_frechet_distance_of_a_set_to_itself_is_zero():
    a = torch.randn(200, 8, generator=gen(0))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_matches_closed_form_for_diagonal_covariances():
    # Commuting covariances: d² = |dmu|² + sum_i (sqrt(a_i) - sqrt(b_i))².
    var_a = torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64)
    var_b = torch.tensor([9.0, 1.0, 0.25], dtype=torch.float64)
    mu_a = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64)
    mu_b = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    expected = (mu_a - mu_b).square().sum() + (var_a.sqrt() - var_b.sqrt()).square().sum()
    assert expected == pytest.approx(1 + 4 + 4 + 1 + 0)  # the oracle itself, by hand
    got = frechet_distance_from_stats(mu_a, torch.diag(var_a), mu_b, torch.diag(var_b))
    assert got == pytest.approx(float(expected), rel=1e-12)


def test_frechet_distance_matches_closed_form_for_non_commuting_covariances():
    # For 2x2 PSD M, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)); with M = S_a^½ S_b S_a^½ this
    # gives tr sqrt(M) = sqrt(tr(S_a S_b) + 2 sqrt(det S_a det S_b)), no matrix roots needed.
    cov_a = torch.tensor([[2.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
    r = rotation(0.7)
    cov_b = r @ torch.diag(torch.tensor([3.0, 0.2], dtype=torch.float64)) @ r.T
    mu_a = torch.tensor([0.5, -1.0], dtype=torch.float64)
    mu_b = torch.tensor([-0.5, 2.0], dtype=torch.float64)
    trace_sqrt = math.sqrt((cov_a @ cov_b).trace() + 2 * math.sqrt(cov_a.det() * cov_b.det()))
    expected = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    got = frechet_distance_from_stats(mu_a, cov_a, mu_b, cov_b)
    assert got == pytest.approx(float(expected), rel=1e-10)


def test_frechet_distance_of_samples_uses_their_mean_and_covariance():
    mu_a, mu_b = torch.zeros(2, dtype=torch.float64), torch.tensor([1.0, 2.0], dtype=torch.float64)
    cov_a = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    r = rotation(1.1)
    cov_b = r @ torch.diag(torch.tensor([2.0, 0.1], dtype=torch.float64)) @ r.T
    a = with_exact_stats(300, mu_a, cov_a, seed=1)
    b = with_exact_stats(500, mu_b, cov_b, seed=2)
    expected = frechet_distance_from_stats(mu_a, cov_a, mu_b, cov_b)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert expected > 1.0  # far from the trivial answer


def test_frechet_distance_is_symmetric():
    a = torch.randn(300, 5, generator=gen(3))
    b = torch.randn(400, 5, generator=gen(4)) @ torch.randn(5, 5, generator=gen(5)) + 1.0
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)


# ---- KID ---------------------------------------------------------------------------------------


def brute_force_unbiased_mmd2(x, y, kernel):
    m, n = len(x), len(y)
    xx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(kernel(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return float(xx + yy - 2 * xy)


def cubic(u, v):
    return (u @ v / u.shape[0] + 1) ** 3


def test_kernel_distance_with_whole_sets_equals_the_unbiased_estimator():
    x = torch.randn(7, 3, generator=gen(6), dtype=torch.float64)
    y = torch.randn(7, 3, generator=gen(7), dtype=torch.float64) + 0.5
    mean, std = kernel_distance(x, y, subsets=3, subset_size=50, generator=gen(8))
    assert mean == pytest.approx(brute_force_unbiased_mmd2(x, y, cubic), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)  # every "subset" is the whole set, reordered


def test_kernel_distance_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    a = torch.randn(1000, 16, generator=gen(9))
    b = torch.randn(1000, 16, generator=gen(10))
    same_mean, same_std = kernel_distance(a, b, subsets=20, subset_size=200, generator=gen(11))
    assert abs(same_mean) < 3 * same_std
    shifted_mean, shifted_std = kernel_distance(
        a, b + 0.5, subsets=20, subset_size=200, generator=gen(11)
    )
    assert shifted_mean > 10 * shifted_std
    assert shifted_mean > 20 * abs(same_mean)


def test_kernel_distance_is_unbiased_where_the_plain_estimate_is_not():
    # Many independent small pairs from one distribution: the average KID is within noise of 0,
    # while the biased (V-statistic) estimate, which keeps k(x_i, x_i), is clearly positive.
    unbiased, biased = [], []
    for seed in range(300):
        x = torch.randn(8, 4, generator=gen(1000 + seed), dtype=torch.float64)
        y = torch.randn(8, 4, generator=gen(5000 + seed), dtype=torch.float64)
        unbiased.append(kernel_distance(x, y, subsets=2, subset_size=8, generator=gen(seed))[0])
        k = lambda u, v: (u @ v.T / 4 + 1) ** 3
        biased.append(float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()))
    unbiased, biased = torch.tensor(unbiased), torch.tensor(biased)
    stderr = unbiased.std() / math.sqrt(len(unbiased))
    assert abs(unbiased.mean()) < 3 * stderr
    assert biased.mean() > 10 * stderr


def test_kernel_distance_is_reproducible_with_a_generator():
    a, b = torch.randn(100, 4, generator=gen(12)), torch.randn(80, 4, generator=gen(13))
    first = kernel_distance(a, b, subsets=5, subset_size=30, generator=gen(14))
    assert kernel_distance(a, b, subsets=5, subset_size=30, generator=gen(14)) == first


# ---- sliced Wasserstein and MMD ----------------------------------------------------------------


def test_sliced_wasserstein_in_one_dimension_is_the_exact_w2():
    a = torch.randn(500, 1, generator=gen(15), dtype=torch.float64)
    b = torch.rand(500, 1, generator=gen(16), dtype=torch.float64) * 3
    exact = (a.sort(0).values - b.sort(0).values).square().mean().sqrt()
    assert sliced_wasserstein(a, b, projections=7, generator=gen(17)) == pytest.approx(
        float(exact), rel=1e-12
    )


def test_sliced_wasserstein_of_a_translation_averages_projected_shifts():
    # Translating by v moves every projection by theta·v, so SW² = E[(theta·v)²] = |v|² / D.
    a = torch.randn(400, 3, generator=gen(18), dtype=torch.float64)
    v = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    got = sliced_wasserstein(a, a + v, projections=4096, generator=gen(19))
    assert got**2 == pytest.approx(float(v.square().sum() / 3), rel=0.1)


def test_sliced_wasserstein_is_zero_for_identical_sets_and_grows_with_a_shift():
    a = torch.randn(300, 2, generator=gen(20))
    b = torch.randn(300, 2, generator=gen(21))
    shifts = [0.0, 0.5, 1.0, 2.0, 4.0]
    dists = [sliced_wasserstein(a, b + s, generator=gen(22)) for s in shifts]
    assert sliced_wasserstein(a, a, generator=gen(22)) == 0.0
    assert all(d0 < d1 for d0, d1 in zip(dists, dists[1:], strict=False))


def test_mmd_rbf_equals_the_brute_force_unbiased_estimator():
    x = torch.randn(6, 2, generator=gen(23), dtype=torch.float64)
    y = torch.randn(5, 2, generator=gen(24), dtype=torch.float64) + 1
    widths = (0.5, 2.0)
    rbf = lambda u, v: sum(torch.exp(-(u - v).square().sum() / (2 * h**2)) for h in widths)
    expected = brute_force_unbiased_mmd2(x, y, rbf)
    assert mmd_rbf(x, y, bandwidths=widths) == pytest.approx(expected, rel=1e-10)


def test_mmd_rbf_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    a = torch.randn(500, 2, generator=gen(25))
    b = torch.randn(500, 2, generator=gen(26))
    same = mmd_rbf(a, b)
    shifted = mmd_rbf(a, b + 0.5)
    assert abs(same) < 0.02 * shifted
    assert shifted > 0.05


# ---- input validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: frechet_distance(torch.randn(10), torch.randn(10)), "2-D"),
        (lambda: frechet_distance(torch.randn(10, 3), torch.randn(10, 4)), "same feature size"),
        (lambda: frechet_distance(torch.randn(1, 3), torch.randn(10, 3)), "at least 2"),
        (
            lambda: frechet_distance(torch.full((5, 2), float("nan")), torch.randn(5, 2)),
            "NaN",
        ),
        (
            lambda: frechet_distance_from_stats(
                torch.zeros(2), torch.eye(3), torch.zeros(2), torch.eye(2)
            ),
            "cov_a",
        ),
        (lambda: kernel_distance(torch.randn(5, 2), torch.randn(5, 2), subsets=1), "subsets"),
        (lambda: sliced_wasserstein(torch.randn(5, 2), torch.randn(6, 2)), "equally sized"),
        (lambda: mmd_rbf(torch.randn(5, 2), torch.randn(5, 2), bandwidths=(0.0,)), "bandwidths"),
    ],
)
def test_metrics_reject_malformed_inputs_with_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
