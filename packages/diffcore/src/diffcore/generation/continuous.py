"""The base of pipelines whose samples are tensors with Gaussian noise diffused onto them
(images, spectrograms): sampling, partial-noise editing (img2img / SDEdit) and inpainting, each
with classifier-free guidance and batches of per-sample seeds.

A domain pipeline adds two things: the shape of one sample (``sample_shape``) and its
conditions as per-sample tensors (``conditions``: the conditional and the unconditional
keyword arguments of its network, for guidance).
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diffcore._utils import check_tiling
from diffcore.denoisers import Clamped, NoiseLevelExperts, compiled, condition, guidance
from diffcore.generation.base import Pipeline, Sampling, batches
from diffcore.generation.options import ContinuousOptions, RefineOptions
from diffcore.io import from_pretrained
from diffcore.processes import DegradationProcess
from diffcore.schedules import karras_grid, trailing_grid
from diffcore.seeding import SampleGenerators, randn

__all__ = [
    "ContinuousPipeline",
    "check_experts",
    "expert_denoiser",
    "network_calls",
    "sampling_grid",
    "steps_for_calls",
]

# Samplers whose steps are posterior draws along the schedule: they walk the training times
# evenly (trailing spacing); the ODE solvers take Karras et al.'s sigma spacing.
_TIME_GRID = ("ddpm", "ddim", "euler_ancestral")


def sampling_grid(
    process: Any,
    sampler: str,
    steps: int,
    *,
    grid: str | Sequence[float] | None = None,
    sigma_min: float | None = None,
) -> Tensor:
    """The noise levels (steps + 1,) a sampler walks for a ``GaussianProcess``: "trailing" time
    spacing (the default of ddpm, ddim, euler_ancestral), "karras" spacing (rho = 7) from
    ``sigma_min`` (default: the schedule's at its smallest training time) to the largest, or
    ``grid`` itself when it lists the levels (a fitted grid)."""
    if grid is not None and not isinstance(grid, str):
        return torch.tensor([float(v) for v in grid], dtype=torch.float64)
    grid = grid or ("trailing" if sampler in _TIME_GRID else "karras")
    if grid == "trailing":
        return trailing_grid(process.schedule, steps)
    if sigma_min is None:
        sigma_min = float(process.schedule.sigma(process.t_min))
    return karras_grid(steps, sigma_min, process.sigma_max)


def network_calls(sampler: str, steps: int) -> int:
    """Network evaluations of ``steps`` grid steps (Heun: two per step but the last)."""
    return 2 * steps - 1 if sampler == "heun" else steps


def steps_for_calls(sampler: str, calls: int) -> int:
    """The most grid steps that fit into ``calls`` network evaluations."""
    return max(1, (calls + 1) // 2) if sampler == "heun" else calls


def check_experts(models: Sequence[Any]) -> None:
    """Raise ValueError unless the models' training time ranges ([t_min, t_max] of their
    processes) tile the whole schedule, one after another, on one schedule."""
    ordered = sorted(models, key=lambda m: m.process.t_min)
    if any(m.process.schedule != ordered[0].process.schedule for m in ordered):
        raise ValueError("experts must share one noise schedule")
    check_tiling([(m.process.t_min, m.process.t_max) for m in ordered], low=1e-3)


def expert_denoiser(models: Sequence[Any]) -> Any:
    """One ``Denoiser`` from models each trained on its own range of times (or one model on
    all of them): each noise level goes to the model that learned it."""
    if len(models) == 1:
        return models[0].process.denoiser(models[0])
    ordered = sorted(models, key=lambda m: m.process.t_min)
    return NoiseLevelExperts(
        [m.process.denoiser(m) for m in ordered],
        [m.process.noise_range[1] for m in ordered[:-1]],
    )


class ContinuousPipeline(Pipeline):
    """Sample, edit and inpaint with a model whose ``process`` is a ``GaussianProcess``.

    Subclasses define ``sample_shape()`` and ``conditions(n, **conditions)``; ``sigma_min``
    (class attribute) overrides the lowest level of Karras grids; ``data_range`` is where data
    lives (estimates and results are clamped into it; None: no clamping).
    compile: run the denoiser through ``torch.compile`` (one compile per batch shape).
    experts: models (or their folders) trained on the other ranges of times (the process's
    ``t_min``/``t_max``); with the pipeline's model they must cover [0, 1], and each noise
    level goes to the model that learned it (experts per noise level, eDiff-I).

    A model whose ``process`` is a ``DegradationProcess`` (trained to undo blur, JPEG,
    band-limiting... "crappification") samples through the same calls with the refinement
    samplers ("cold", "direct"; :class:`RefineOptions`) over equal steps of severity. Generation
    starts from ``D(c, 1)`` plus the process's noise at t = 1, where the constant picture c is
    drawn per channel from the model's ``config.start`` ((mean, std) of its training images'
    channel means); edit and inpaint start from the given images as usual.
    """

    options_class = ContinuousOptions
    sigma_min: float | None = None
    data_range: tuple[float, float] | None = (-1.0, 1.0)

    def __init__(
        self,
        model: Any,
        *,
        compile: bool = False,
        experts: Sequence[Any] = (),
        **options: Any,
    ) -> None:
        super().__init__(model, **options)
        self.compile = compile
        self.experts = [self._load_expert(e) for e in experts]
        if self.restores:
            if self.experts:
                raise ValueError("experts per noise level need Gaussian-diffusion models")
            self.options_class = RefineOptions  # this pipeline's samplers walk severities
        else:
            check_experts([self.model, *self.experts])  # a lone expert cannot sample

    @property
    def restores(self) -> bool:
        """Whether the model undoes a degradation (``DegradationProcess``) rather than noise."""
        return isinstance(self.model.process, DegradationProcess)

    def _load_expert(self, expert: Any) -> Any:
        if isinstance(expert, (str, Path)):
            return from_pretrained(self.model_class, expert, device=self.device).eval()
        return expert.to(self.device).eval()

    @property
    def process(self) -> Any:
        """The process sampling walks: the model's, or with experts the whole range they
        cover together."""
        if not self.experts:
            return self.model.process
        low = min(m.process.t_min for m in [self.model, *self.experts])
        return dataclasses.replace(self.model.process, t_min=low, t_max=1.0)

    # what a domain adds

    @abstractmethod
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample, e.g. (C, H, W)."""

    def conditions(self, n: int, **conditions: Any) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """(cond, uncond): the network's keyword arguments for ``n`` samples, each a tensor with
        n rows; uncond holds the "no condition" values guidance contrasts with. ({}, {}) for an
        unconditional model; raise ValueError for conditions the model does not take."""
        if conditions:
            raise ValueError(f"the model takes no conditions, got {', '.join(conditions)}")
        return {}, {}

    # the public API

    def denoiser(
        self, cond: Mapping[str, Tensor], uncond: Mapping[str, Tensor], scale: float
    ) -> Any:
        """``D(x, sigma)`` for one batch: conditioned, guided with ``scale``, clamped."""
        base = expert_denoiser([self.model, *self.experts])
        if cond and scale != 1.0:
            base = guidance(base, scale, cond, uncond)
        else:
            base = condition(base, **cond)
        if self.data_range is not None:
            base = Clamped(base, *self.data_range)
        if self.compile:
            return compiled(base, cuda_graphs=self.device.type == "cuda")
        return base

    @torch.no_grad()
    def sample(self, n: int, **kwargs: Any) -> Tensor:
        """``n`` new samples (n, *sample_shape). kwargs: the ``Sampling`` keywords (sampler
        "dpmpp_2m", steps 20, guidance 1, seed 0, batch_size 64, options, progress, callback)
        and the domain's conditions (labels=...). A seed gives the same samples at any
        ``batch_size``."""
        self.check_count(n)
        return self._run(n, kwargs, {})

    @torch.no_grad()
    def edit(self, x: Tensor, strength: float = 0.5, **kwargs: Any) -> Tensor:
        """Partial-noise editing (SDEdit, Meng et al. 2021): noise ``x`` (B, *sample_shape) and
        run the last ``strength`` share of the sampler's steps; strength 1 ignores the input.
        kwargs: as in ``sample``."""
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must lie in (0, 1], got {strength}")
        x = self._check_input(x, "x")
        return self._run(len(x), kwargs, {"x_init": x, "t_start": strength})

    @torch.no_grad()
    def inpaint(self, x: Tensor, mask: Tensor, **kwargs: Any) -> Tensor:
        """Regenerate ``x`` (B, *sample_shape) where ``mask`` is True (white = repaint, as in
        diffusers); mask broadcasts to x (e.g. (B or 1, 1, H, W)). The rest is kept exactly.
        kwargs: as in ``sample``."""
        x = self._check_input(x, "x")
        mask = torch.as_tensor(mask, device=self.device).bool()
        try:
            keep = (~mask).expand_as(x)
        except RuntimeError:
            raise ValueError(
                f"mask {tuple(mask.shape)} does not broadcast to x {tuple(x.shape)}"
            ) from None
        return self._run(len(x), kwargs, {"known": x, "mask": keep})

    @torch.no_grad()
    def fit_grid(
        self,
        sampler: str,
        steps: int,
        *,
        n: int = 64,
        seed: int = 1,
        guidance: float = 1.0,
        sweeps: int = 4,
        **conditions: Any,
    ) -> Tensor:
        """Noise levels fitted to this model for ``sampler`` at ``steps`` steps
        (:func:`diffcore.samplers.grids.fit_grid`: the solver's distance to a fine solve from
        the same ``n`` noise draws, minimised level by level). Sample with it through
        ``options={"grid": grid.tolist()}``, or make it the folder's default:
        ``pipe.sampling_defaults = {"sampler": s, "steps": k, "options": {"grid": ...}}``
        then ``pipe.save_pretrained(folder)``. Fit with another seed than you evaluate with."""
        from diffcore.samplers.grids import fit_grid

        if self.restores:
            raise ValueError("fit_grid fits noise levels of Gaussian-diffusion models")
        self.check_count(n)
        cond, uncond = self.conditions(n, **conditions)
        gens = SampleGenerators(generators=self.generators(seed, n))
        noise = randn((n, *self.sample_shape()), gens, device=self.device)
        denoiser = self.denoiser(cond, uncond, guidance)
        karras = sampling_grid(
            self.process, sampler, steps, grid="karras", sigma_min=self.sigma_min
        )
        with self.autocast():
            return fit_grid(
                denoiser,
                noise,
                sampler,
                steps,
                sigma_min=float(karras[-2]),
                sigma_max=float(karras[0]),
                sweeps=sweeps,
            )

    # the loop

    def _check_input(self, x: Tensor, name: str) -> Tensor:
        x = torch.as_tensor(x)
        shape = self.sample_shape()
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
            raise ValueError(
                f"{name} must be (B, {', '.join(map(str, shape))}), got {tuple(x.shape)}"
            )
        if not x.dtype.is_floating_point:
            raise TypeError(f"{name} must be a float tensor, got {x.dtype}")
        if len(x) == 0:
            raise ValueError(f"{name} holds no samples")
        return x.to(self.device, torch.float32)

    def _degraded_start(self, noise: Tensor, gens: SampleGenerators) -> Tensor:
        """Where refinement starts: ``D(c, 1) + noise_at(1) * noise``, c constant per channel,
        drawn from ``config.start``."""
        start = getattr(self.model.config, "start", ())
        if len(start) != noise.shape[1]:
            raise ValueError(
                f"the model's config.start holds {len(start)} (mean, std) pairs for "
                f"{noise.shape[1]} channels; a model trained on a degradation records them"
            )
        stats = torch.tensor(start, dtype=noise.dtype, device=noise.device)  # (C, 2)
        draws = randn((len(noise), noise.shape[1]), gens, device=self.device)
        c = (stats[:, 0] + stats[:, 1] * draws).reshape(*draws.shape, *[1] * (noise.ndim - 2))
        process = self.model.process
        ones = noise.new_ones(len(noise))
        return (
            process.degrade(c.expand_as(noise).contiguous(), ones) + process.noise_at(1.0) * noise
        )

    def _run(self, n: int, kwargs: dict[str, Any], edit: dict[str, Any]) -> Tensor:
        sampling = {k: kwargs.pop(k) for k in list(kwargs) if k in Sampling.__annotations__}
        plan, run = self.plan(sampling)
        seed, batch_size, callback = run["seed"], run["batch_size"], run["callback"]
        cond, uncond = self.conditions(n, **kwargs)  # what is left are the domain's conditions
        for key, value in {**cond, **uncond}.items():
            if len(value) != n:
                raise ValueError(f"condition {key!r} has {len(value)} rows for {n} samples")
        if self.restores:
            grid = torch.linspace(1.0, 0.0, plan.steps + 1, dtype=torch.float64)
            process = self.model.process
            edit = {**edit, "degrade": process.degrade, "noise_level": process.noise_at}
        else:
            grid = sampling_grid(
                self.process, plan.sampler, plan.steps, grid=plan.grid, sigma_min=self.sigma_min
            )
        generators = self.generators(seed, n)
        shape = self.sample_shape()
        out = []
        chunks = list(batches(range(n), batch_size))
        bar = self.progress_bar(len(chunks) * (len(grid) - 1), plan.sampler, run["progress"])

        def report(*step: Any) -> None:
            bar.update(1)
            if callback is not None:
                callback(*step)

        for rows in chunks:
            part = slice(rows[0], rows[-1] + 1)
            gens = SampleGenerators(generators=generators[part])
            noise = randn((len(rows), *shape), gens, device=self.device)
            if self.restores:
                noise = self._degraded_start(noise, gens)
            denoiser = self.denoiser(
                {k: v[part] for k, v in cond.items()},
                {k: v[part] for k, v in uncond.items()},
                plan.guidance,
            )
            extra = {k: v[part] if isinstance(v, Tensor) else v for k, v in edit.items()}
            with self.autocast():
                x = plan.function(
                    denoiser, noise, grid, generator=gens, callback=report, **extra, **plan.options
                )
            if self.data_range is not None:
                x = x.clamp(*self.data_range)
            out.append(x.float().cpu())
        bar.close()
        return torch.cat(out)
