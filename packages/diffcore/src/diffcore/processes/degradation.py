"""Deterministic "crappification" and the restorer that learns to undo it.

Cold Diffusion (Bansal et al. 2022, https://arxiv.org/abs/2208.09392): any degradation
``D(x0, t)`` whose severity grows with t in [0, 1] (t = 0: the clean image, t = 1: the most
degraded) can replace Gaussian noise. A restorer ``R(D(x0, t), t) ~ x0`` is trained to undo it,
and ``diffcore.samplers.refine.sample_refine`` generates by restoring again and again at
decreasing severity.

A degradation is a pure function ``(x0 (B, C, H, W), t (B,)) -> x_t (B, C, H, W)``; each factory
below (``blur``, ``downsample``, ``pixelate``) checks its settings once and returns one. Every
degradation is exactly the identity at t = 0, keeps the shape (odd sizes too) and accepts a
different t for every sample of a batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import KW_ONLY, dataclass
from functools import partial
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from diffcore._utils import stratified_time

__all__ = [
    "Degradation",
    "DegradationProcess",
    "Restorer",
    "blur",
    "check_degradation_input",
    "downsample",
    "pixelate",
]

Degradation = Callable[[Tensor, Tensor], Tensor]
"""``degrade(x0, t) -> x_t``: x0 (B, C, H, W), t (B,) severities in [0, 1]."""

LossNorm = Literal["l1", "l2"]
UpsampleMode = Literal["bilinear", "nearest"]


class Restorer(Protocol):
    """``R(x_t, t, **cond) -> x0 estimate``.

    x_t: (B, C, H, W) degraded image; t: (B,) float severity in [0, 1] of each sample.
    Returns a tensor shaped like ``x_t``: the estimate of the clean image.
    """

    def __call__(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor: ...


def check_degradation_input(x0: Tensor, t: Tensor | float) -> Tensor:
    """Check an image batch and its severities; return t as a float64 (B,) tensor on x0's device.

    x0 must be a floating (B, C, H, W) tensor; t a scalar or (B,) with values in [0, 1]."""
    if not isinstance(x0, Tensor) or not x0.is_floating_point():
        raise TypeError(f"x0 must be a floating-point tensor, got {type(x0).__name__}")
    if x0.ndim != 4:
        raise ValueError(f"x0 must be an image batch (B, C, H, W), got shape {tuple(x0.shape)}")
    t = torch.as_tensor(t, device=x0.device).double()
    if t.ndim == 0:
        t = t.expand(x0.shape[0])
    if t.shape != (x0.shape[0],):
        raise ValueError(
            f"t must be a scalar or have shape (B,) = ({x0.shape[0]},), got {tuple(t.shape)}"
        )
    if not bool(((t >= 0) & (t <= 1)).all()):  # also rejects NaN
        raise ValueError(f"severities t must lie in [0, 1], got {t.tolist()}")
    return t


def _groups(keys: list[Any]) -> Iterator[tuple[Any, list[int]]]:
    """Indices of the samples sharing each key, so per-sample settings cost one call per value."""
    found: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        found.setdefault(key, []).append(i)
    yield from found.items()


def _per_group(
    x0: Tensor, keys: list[Any], identity: Any, apply: Callable[[Tensor, Any], Tensor]
) -> Tensor:
    """Apply ``apply(x0[idx], key)`` to each group of samples; ``identity`` keys pass through
    untouched, which is what makes t = 0 exactly the identity."""
    out = x0.clone()
    for key, idx in _groups(keys):
        if key != identity:
            index = torch.tensor(idx, device=x0.device)
            out[index] = apply(x0[index], key)
    return out


# --- blur ------------------------------------------------------------------------------------


def _gaussian_taps(sigma: Tensor, radius: int) -> Tensor:
    """Sampled Gaussian kernels (B, 2 radius + 1), each cut at its own 3 sigma (so a sample's
    result does not depend on its batch) and summing to 1; sigma = 0 gives a delta."""
    offsets = torch.arange(-radius, radius + 1, device=sigma.device, dtype=sigma.dtype)
    sigma = sigma[:, None]
    safe = sigma.clamp(min=1e-12)  # sigma = 0 -> every tap but the centre is exp(-inf) = 0
    taps = torch.exp(-0.5 * (offsets / safe) ** 2) * (offsets.abs() <= torch.ceil(3 * sigma))
    return taps / taps.sum(1, keepdim=True)


def _blur_axis(x: Tensor, sigma: Tensor, radius: int, dim: int) -> Tensor:
    """Blur (B, C, H, W) along H (dim=2) or W (dim=3) with a per-sample Gaussian: one grouped
    convolution over B * C channels."""
    if radius == 0:
        return x
    b, c, h, w = x.shape
    taps = _gaussian_taps(sigma, radius).to(x.dtype).repeat_interleave(c, 0)  # (B*C, k)
    if dim == 2:
        weight, pad = taps[:, None, :, None], (0, 0, radius, radius)
    else:
        weight, pad = taps[:, None, None, :], (radius, radius, 0, 0)
    padded = F.pad(x.reshape(1, b * c, h, w), pad, mode="reflect")
    return F.conv2d(padded, weight, groups=b * c).reshape(b, c, h, w)


def _blur(x0: Tensor, t: Tensor, *, max_sigma: float) -> Tensor:
    t = check_degradation_input(x0, t)
    sigma = max_sigma * t  # (B,) pixels, linear in t
    # Taps to 3 sigma; reflect padding cannot reach past the opposite border, so on images
    # smaller than the kernel it is truncated there (and renormalised to keep the mean).
    radius = math.ceil(3 * float(sigma.max())) if sigma.numel() else 0
    h, w = x0.shape[-2:]
    out = _blur_axis(x0, sigma, min(radius, h - 1), 2)
    out = _blur_axis(out, sigma, min(radius, w - 1), 3)
    # A delta kernel is exact in exact arithmetic; convolution algorithms need not be.
    return torch.where((t == 0).reshape(-1, 1, 1, 1), x0, out)


def blur(max_sigma: float = 3.0) -> Degradation:
    """Gaussian blur of standard deviation ``max_sigma * t`` pixels (separable, reflect padding).

    The degradation of Cold Diffusion's deblurring experiments, parameterised by the blur's
    width rather than by a number of repeated small blurs."""
    if not max_sigma > 0:
        raise ValueError(f"max_sigma must be positive (pixels), got {max_sigma}")
    return partial(_blur, max_sigma=float(max_sigma))


# --- downsample ------------------------------------------------------------------------------


def _shrink(size: int, smallest: int, t: float) -> int:
    """Size at severity t, geometric from ``size`` (t = 0) to ``smallest`` (t = 1): equal steps in
    t divide the resolution by equal factors."""
    smallest = min(smallest, size)
    return max(1, round(size ** (1.0 - t) * smallest**t))


def _down_up(x: Tensor, size: tuple[int, int], *, mode: UpsampleMode) -> Tensor:
    small = F.interpolate(x, size=size, mode="area")  # box filter: every pixel counts once
    if mode == "bilinear":
        return F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
    # "nearest-exact" samples pixel centres; plain "nearest" shifts the image by half a pixel.
    return F.interpolate(small, size=x.shape[-2:], mode="nearest-exact")


def _downsample(x0: Tensor, t: Tensor, *, min_size: int, mode: UpsampleMode) -> Tensor:
    t = check_degradation_input(x0, t)
    h, w = x0.shape[-2:]
    sizes = [(_shrink(h, min_size, s), _shrink(w, min_size, s)) for s in t.tolist()]
    return _per_group(x0, sizes, (h, w), partial(_down_up, mode=mode))


def downsample(min_size: int = 4, *, mode: UpsampleMode = "bilinear") -> Degradation:
    """Area-downsample to a size shrinking with t, then upsample back to the input size.

    Each side goes geometrically from its full size (t = 0) to ``min(min_size, side)`` (t = 1),
    rounded to whole pixels, so the degradation is piecewise constant in t. ``mode`` is how the
    small image is brought back: "bilinear" (smooth, no blocks; default) or "nearest"
    (pixel-centre nearest neighbour: visible blocks, values only from the small image)."""
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
        raise ValueError(f"min_size must be a positive int (pixels), got {min_size!r}")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    return partial(_downsample, min_size=min_size, mode=mode)


# --- pixelate --------------------------------------------------------------------------------


def _blocks(x: Tensor, block: int) -> Tensor:
    h, w = x.shape[-2:]
    bh, bw = min(block, h), min(block, w)
    # ceil_mode keeps the partial blocks at the bottom/right edges; they average what they cover.
    means = F.avg_pool2d(x, (bh, bw), stride=(bh, bw), ceil_mode=True)
    return means.repeat_interleave(bh, 2)[..., :h, :].repeat_interleave(bw, 3)[..., :w]


def _pixelate(x0: Tensor, t: Tensor, *, max_block: int) -> Tensor:
    t = check_degradation_input(x0, t)
    blocks = [round(max_block**s) for s in t.tolist()]
    return _per_group(x0, blocks, 1, _blocks)


def pixelate(max_block: int = 8) -> Degradation:
    """Replace each block of ``b x b`` pixels (aligned at the top-left) by its mean; b grows
    geometrically from 1 (t = 0) to ``max_block`` (t = 1), rounded to whole pixels. Blocks are
    cut to the image size, so a block at least as large as the image gives the channel means."""
    if isinstance(max_block, bool) or not isinstance(max_block, int) or max_block < 1:
        raise ValueError(f"max_block must be a positive int (pixels), got {max_block!r}")
    return partial(_pixelate, max_block=max_block)


# --- the process -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DegradationProcess:
    """``x_t = degrade(x0, t) + noise_std * eps`` and the restoration loss.

    degrade: a ``Degradation`` (``blur(...)``, ``downsample(...)``, ``pixelate(...)`` or your own).
    noise_std: std of Gaussian noise added at every severity (0: none). A deterministic
    degradation maps many images to one fully degraded image; a little noise lets different
    starting points restore to different images, and the restorer learns to ignore it. It is
    added at every t, t = 0 included, so the residual that the improved sampler carries along
    stays at the level the restorer was trained on.
    noise_slope: Gaussian noise that grows with severity, std ``noise_slope * t`` on top of
    ``noise_std`` (crappifier "noise"): with it the restorer also denoises, and the improved
    sampler shrinks the carried residual as the noise level falls (``noise_at``).
    loss_norm: "l1" (Cold Diffusion's choice, sharper restorations) or "l2" on ``R(x_t) - x0``.
    t_min: smallest training severity (0 trains the restorer on clean images too).
    residual: the network predicts the correction ``x0 - x_t`` rather than x0 itself
    (``denoiser(net)`` adds x_t back), so a barely degraded input needs only a small output.
    """

    degrade: Degradation
    _: KW_ONLY
    noise_std: float = 0.0
    noise_slope: float = 0.0
    loss_norm: LossNorm = "l1"
    t_min: float = 0.0
    residual: bool = False

    def __post_init__(self) -> None:
        if not callable(self.degrade):
            raise TypeError(
                f"degrade must be a callable (x0, t) -> x_t, got {type(self.degrade).__name__}"
            )
        if not self.noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")
        if not self.noise_slope >= 0:
            raise ValueError(f"noise_slope must be >= 0, got {self.noise_slope}")
        if self.loss_norm not in ("l1", "l2"):
            raise ValueError(f"loss_norm must be 'l1' or 'l2', got {self.loss_norm!r}")
        if not 0.0 <= self.t_min < 1.0:
            raise ValueError(f"t_min must lie in [0, 1), got {self.t_min}")

    def corrupt(self, x0: Tensor, t: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Degrade x0 (B, C, H, W) to severities t (B,), plus noise from ``generator``."""
        xt = self.degrade(x0, t)
        if self.noise_std > 0 or self.noise_slope > 0:
            eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
            std = self.noise_at(torch.as_tensor(t, device=x0.device).to(x0.dtype))
            xt = xt + std.reshape(-1, *([1] * (x0.ndim - 1))) * eps
        return xt

    def noise_at(self, t: Tensor | float) -> Tensor | float:
        """The std of the Gaussian noise added at severity t: ``noise_std + noise_slope * t``."""
        return self.noise_std + self.noise_slope * t

    def denoiser(self, net: Any) -> Restorer:
        """``net`` as the restorer ``R(x_t, t, **cond) -> x0 estimate`` samplers call (x_t plus
        its output when ``residual``): the counterpart of ``GaussianProcess.denoiser``."""
        return _ResidualRestorer(net) if self.residual else net

    def sample_time(
        self, batch: int, generator: torch.Generator | None = None, device: Any = "cpu"
    ) -> Tensor:
        """Training severities (B,) in [t_min, 1], stratified uniform, float64."""
        return stratified_time(batch, generator, device, self.t_min, 1.0)

    def loss(
        self, restorer: Restorer, x0: Tensor, generator: torch.Generator | None = None, **cond: Any
    ) -> Tensor:
        """Restoration loss (a scalar) for a batch x0 (B, C, H, W): severities and noise come from
        ``generator``; ``denoiser(restorer)`` is called as ``(x_t, t, **cond)`` with t float32
        (``restorer`` is the network itself when ``residual``)."""
        t = self.sample_time(x0.shape[0], generator, x0.device)
        xt = self.corrupt(x0, t, generator)
        err = self.denoiser(restorer)(xt, t.to(torch.float32), **cond).float() - x0.float()
        return err.abs().mean() if self.loss_norm == "l1" else err.pow(2).mean()


@dataclass(frozen=True)
class _ResidualRestorer:
    """``x_t + net(x_t, t, **cond)``: a network trained to predict the correction."""

    net: Any

    def __call__(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return x + self.net(x, t, **cond)
