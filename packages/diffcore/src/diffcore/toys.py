"""Toy distributions whose ideal denoiser is known in closed form: oracles for samplers.

For a Gaussian mixture ``sum_k w_k N(mu_k, s_k^2 I)``, the data noised to level sigma is the
mixture ``sum_k w_k N(mu_k, (s_k^2 + sigma^2) I)``, and the ideal denoiser is

    E[x0 | x] = sum_k r_k(x) (mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k))

with responsibilities r_k(x) of the noised mixture. A sampler fed this denoiser is judged on its
own discretization error alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GaussianMixture:
    """Isotropic Gaussian mixture in D dimensions.

    means: (K, D); stds: (K,); weights: (K,) summing to 1.
    """

    means: Tensor
    stds: Tensor
    weights: Tensor

    def __post_init__(self) -> None:
        k = self.means.shape[0]
        if self.means.ndim != 2 or self.stds.shape != (k,) or self.weights.shape != (k,):
            raise ValueError(
                f"expected means (K, D), stds (K,), weights (K,); got {tuple(self.means.shape)}, "
                f"{tuple(self.stds.shape)}, {tuple(self.weights.shape)}"
            )
        if not torch.isclose(self.weights.sum(), torch.tensor(1.0, dtype=self.weights.dtype)):
            raise ValueError(f"weights must sum to 1, got {float(self.weights.sum())}")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n exact samples (n, D)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=self.means.dtype)
        return self.means[k] + self.stds[k, None] * noise

    def _component_logp(self, x: Tensor, var: Tensor) -> Tensor:
        """log w_k + log N(x; mu_k, var_k I) (N, K) for x (N, D) and variances var (N, K)."""
        sq = torch.cdist(x, self.means.to(x)).pow(2)
        norm = 0.5 * self.dim * torch.log(2 * math.pi * var)
        return self.weights.to(x).log() - 0.5 * sq / var - norm

    def log_prob(self, x: Tensor, sigma: float = 0.0) -> Tensor:
        """log density (N,) of the mixture noised to level sigma."""
        var = (self.stds.to(x) ** 2 + sigma**2).expand(x.shape[0], -1)
        return torch.logsumexp(self._component_logp(x, var), dim=1)

    def denoise(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The ideal denoiser: x (N, D) at levels sigma (N,) -> E[x0 | x] (N, D)."""
        s2 = self.stds.to(x) ** 2  # (K,)
        var = s2 + sigma.to(x)[:, None] ** 2  # (N, K)
        resp = torch.softmax(self._component_logp(x, var), dim=1)  # (N, K)
        shrink = s2 / var  # (N, K)
        means = self.means.to(x)
        # sum_k r_k (mu_k + shrink_k (x - mu_k)) = sum_k r_k (1 - shrink_k) mu_k + (sum_k r_k shrink_k) x
        return (resp * (1 - shrink)) @ means + (resp * shrink).sum(1, keepdim=True) * x

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        return self.denoise(x, sigma)

    def conditional(self, known_dims: list[int], values: Tensor) -> GaussianMixture:
        """The mixture over the other dimensions given ``x[known_dims] = values`` (exact, since the
        components are isotropic: only the weights change)."""
        free = [d for d in range(self.dim) if d not in known_dims]
        mu_known = self.means[:, known_dims]
        var = self.stds**2
        logw = (
            self.weights.log()
            - 0.5 * (values[None] - mu_known).pow(2).sum(1) / var
            - 0.5 * len(known_dims) * torch.log(2 * math.pi * var)
        )
        return GaussianMixture(self.means[:, free], self.stds, torch.softmax(logw, 0))


def ring_mixture(k: int = 8, radius: float = 2.0, std: float = 0.15) -> GaussianMixture:
    """The classic 2-D test: k equal components on a circle (float64)."""
    angle = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    means = radius * torch.stack([angle.cos(), angle.sin()], 1)
    return GaussianMixture(
        means,
        torch.full((k,), std, dtype=torch.float64),
        torch.full((k,), 1 / k, dtype=torch.float64),
    )


def uneven_mixture() -> GaussianMixture:
    """A 2-D mixture with unequal weights and widths (harder than the ring for samplers)."""
    means = torch.tensor([[-1.5, -1.0], [1.5, -1.0], [0.0, 1.6], [0.0, 0.0]], dtype=torch.float64)
    stds = torch.tensor([0.1, 0.3, 0.2, 0.05], dtype=torch.float64)
    weights = torch.tensor([0.4, 0.2, 0.3, 0.1], dtype=torch.float64)
    return GaussianMixture(means, stds, weights)


class MarkovChainTokens:
    """The exact ``TokenDenoiser`` of a Markov chain over short sequences: the logits are
    log p(x0^l = v | visible tokens), by enumerating all K^L sequences and tabulating every
    partially masked input ((K+1)^L of them). Token K is the mask; it gets ``mask_logit``, which
    samplers must ignore. Counts its calls in ``calls``.

    init: (K,) first-token probabilities; trans: (K, K) transition matrix; length: L.
    """

    def __init__(self, init: Tensor, trans: Tensor, length: int, *, mask_logit: float = 30.0):
        k = init.shape[0]
        if trans.shape != (k, k):
            raise ValueError(f"trans must be ({k}, {k}) for {k} symbols, got {tuple(trans.shape)}")
        if (k + 1) ** length > 100_000:
            raise ValueError(f"{k} symbols over {length} positions is too many to enumerate")
        self.symbols, self.length, self.mask_id, self.calls = k, length, k, 0
        self.seqs = torch.cartesian_prod(*[torch.arange(k)] * length).reshape(
            -1, length
        )  # (K^L, L)
        logp = init.log()[self.seqs[:, 0]] + trans.log()[self.seqs[:, :-1], self.seqs[:, 1:]].sum(1)
        self.probs = logp.exp()
        inputs = torch.cartesian_prod(*[torch.arange(k + 1)] * length).reshape(-1, length)
        onehot = torch.nn.functional.one_hot(self.seqs, k).double()
        logits = torch.einsum("bn,nlk->blk", self.posterior(inputs), onehot).clamp_min(1e-30).log()
        self.table = torch.cat([logits, logits.new_full((len(inputs), length, 1), mask_logit)], -1)

    def posterior(self, x: Tensor) -> Tensor:
        """p(sequence | visible tokens of x) (B, K^L); rows no sequence fits are all 0."""
        fits = ((x[:, None] == self.seqs) | (x[:, None] == self.mask_id)).all(-1)
        w = fits * self.probs
        return w / w.sum(1, keepdim=True).clamp_min(1e-300)

    def index(self, seqs: Tensor) -> Tensor:
        """Row of each clean sequence (N, L) in ``seqs``/``probs``."""
        return (seqs * self.symbols ** torch.arange(self.length - 1, -1, -1)).sum(1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n exact sequences (n, L)."""
        return self.seqs[torch.multinomial(self.probs, n, replacement=True, generator=generator)]

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.calls += 1
        base = (self.symbols + 1) ** torch.arange(self.length - 1, -1, -1)
        return self.table[(x * base).sum(1)].float()
