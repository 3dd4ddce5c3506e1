"""diffcore.kernels.group_norm_silu: SiLU((1 + scale) * GroupNorm(x) + shift), fused.

The reference is the composition of torch's own ops (group_norm, then the modulation, then
silu) and must equal it exactly; it is also the U-Net's normalisation and its training path.
The Triton kernel is checked against the reference under Triton's CPU interpreter (a
subprocess running this file as a script: TRITON_INTERPRET must be set before any Triton
kernel is defined). The oracle is the reference evaluated in float64 on the same inputs:
torch's fp32 CPU kernel is itself a little off in places (a group of one value per sample,
whose variance should be exactly 0, comes out at ~1e-4 relative error after the 1/sqrt(eps)
scaling). Tolerances, Triton vs that oracle:
- fp32: rtol = atol = 1e-5. The kernel sums the group's statistics in another order (Welford
  per lane, then merged) and folds normalisation, affine and modulation into one multiply-add
  per element, so results differ by a few fp32 ulps of values that weight and (1 + scale)
  scale up to about 10;
- fp32 with a common offset of 100 (33 standard deviations), against the float64 reference:
  atol = 5e-5. The mean carries an fp32 rounding error of a few ulps of 100 (~1e-5), scaled
  by weight * (1 + scale) / std; a variance taken as E[x^2] - E[x]^2 would instead lose all
  its digits (torch's own CPU kernel for channels-last inputs is off by ~7e-3 there);
- bf16 / fp16 (GPU): rtol = 2 eps of the dtype, atol = 1e-3, against the oracle on the same
  (upcast) inputs rounded to the dtype: the kernel computes in fp32 and rounds once, at the end.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import diffcore.nn
from diffcore.kernels import backend_for, group_norm_silu, use_backend
from diffcore.kernels.group_norm_silu import reference

FP32_TOL = {"rtol": 1e-5, "atol": 1e-5}
HAS_TRITON = importlib.util.find_spec("triton") is not None  # no import: see test_kernels.py
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")

# (shape, groups, layout): odd sizes, groups larger than one block (1024), one position per
# channel, empty batches and images, 1-D and 2-D signals, channels-last and strided views.
CASES = [
    ((2, 6, 5, 7), 3, "contiguous"),
    ((2, 6, 5, 7), 3, "channels_last"),
    ((2, 4, 33, 35), 2, "contiguous"),  # 2 * 1155 = 2310 values per group: 3 blocks, ragged
    ((2, 4, 33, 35), 2, "channels_last"),
    ((1, 2, 1, 1), 1, "contiguous"),  # one position
    ((2, 4, 1, 1), 4, "channels_last"),  # one value per group (per sample): variance 0
    ((2, 4, 5), 2, "contiguous"),  # (N, C, L)
    ((2, 6, 4, 3, 5), 3, "contiguous"),  # (N, C, D, H, W)
    ((2, 6, 9, 8), 2, "strided"),  # not dense: copied first
    ((0, 4, 3, 3), 2, "contiguous"),
    ((2, 4, 0, 3), 2, "channels_last"),
]
OPTIONS = [(True, True), (False, True), (True, False), (False, False)]  # (affine?, modulation?)


def make_inputs(
    case, *, affine: bool, modulation: bool, dtype=torch.float32, device="cpu", seed=0, offset=1.0
):
    """(x, groups, weight, bias, scale, shift) for one call: x = offset + 3 * N(0, 1); scale
    and shift are chunks of one (N, 2C) tensor, as the U-Net's embedding produces them."""
    shape, groups, layout = case
    gen = torch.Generator().manual_seed(seed)
    x = offset + 3.0 * torch.randn(shape, generator=gen)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = torch.randn((*shape[:-1], 2 * shape[-1]), generator=gen)[..., ::2]
    channels, n = shape[1], shape[0]
    weight = bias = scale = shift = None
    if affine:
        weight, bias = (
            1 + torch.randn(channels, generator=gen),
            torch.randn(channels, generator=gen),
        )
    if modulation:
        scale, shift = torch.randn(n, 2 * channels, generator=gen).chunk(2, dim=1)
    moved = [
        t.to(device, dtype) if t is not None else None for t in (x, weight, bias, scale, shift)
    ]
    return moved[0], groups, *moved[1:]


def unfused(x, groups, weight, bias, scale=None, shift=None, eps=1e-5):
    """The spec spelt out with torch's ops, for a 4-D x."""
    h = F.group_norm(x, groups, weight, bias, eps)
    if scale is not None:
        h = h * (1 + scale[..., None, None]) + shift[..., None, None]
    return F.silu(h)


def in_float64(*args) -> torch.Tensor:
    """The reference on float64 copies of the inputs: the exact value, before fp32 rounding."""
    return reference.group_norm_silu(*[a.double() if torch.is_tensor(a) else a for a in args])


# --- the reference (the spec, the CPU path and the training path) -------------------------------


@pytest.mark.parametrize("affine,modulation", OPTIONS)
def test_reference_is_groupnorm_then_modulation_then_silu_exactly(affine, modulation):
    for case in [c for c in CASES if len(c[0]) == 4]:
        args = make_inputs(case, affine=affine, modulation=modulation)
        torch.testing.assert_close(group_norm_silu(*args), unfused(*args), rtol=0, atol=0)


def test_the_unet_normalisation_is_this_op():
    assert diffcore.nn.group_norm_silu is group_norm_silu


def test_channels_last_input_gives_channels_last_output():
    x, *rest = make_inputs(CASES[1], affine=True, modulation=True)
    out = group_norm_silu(x, *rest)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_gradients_are_those_of_the_unfused_composition():
    args = make_inputs(((2, 4, 3, 3), 2, "contiguous"), affine=True, modulation=True)
    grads = []
    for fn in (group_norm_silu, unfused):
        leaves = [a.detach().requires_grad_() if torch.is_tensor(a) else a for a in args]
        fn(*leaves).pow(2).sum().backward()
        grads.append([a.grad for a in leaves if torch.is_tensor(a)])
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def _call(**changes):
    """Keyword arguments of a valid call on x (2, 4, 3, 3) in 2 groups, with ``changes``."""
    call = {"x": torch.zeros(2, 4, 3, 3), "groups": 2, "weight": torch.ones(4), "bias": None}
    return {**call, "scale": torch.zeros(2, 4), "shift": torch.zeros(2, 4), **changes}


@pytest.mark.parametrize(
    "call,error,message",
    [
        (_call(shift=None), ValueError, "both scale and shift"),
        (_call(groups=3), ValueError, "must divide the channel count"),
        (_call(groups=0), ValueError, "positive integer"),
        (_call(x=torch.zeros(4), scale=None, shift=None), ValueError, r"\(N, C, \*\)"),
        (
            _call(x=torch.zeros(1, 2, 1, 1), weight=None, scale=None, shift=None),
            ValueError,
            "more than one value per group",
        ),
        (_call(weight=torch.ones(3)), ValueError, r"weight must have shape \(4,\)"),
        (_call(scale=torch.zeros(1, 4)), ValueError, r"scale must have shape \(2, 4\)"),
        (_call(shift=[[0.0] * 4] * 2), TypeError, "shift must be a torch.Tensor"),
    ],
    ids=[
        "scale-without-shift",
        "groups",
        "zero-groups",
        "1-d",
        "one-value",
        "weight",
        "scale",
        "list",
    ],
)
def test_bad_inputs_are_rejected_with_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        group_norm_silu(**call)


# --- dispatch -------------------------------------------------------------------------------------


def test_cpu_tensors_take_the_reference(monkeypatch):
    monkeypatch.delenv("DIFFCORE_KERNELS", raising=False)
    assert backend_for(torch.zeros(2, 4, 3, 3)) == "reference"


# --- the Triton kernel, under the interpreter ---------------------------------------------------


@pytest.fixture(scope="module")
def interpreter_run() -> subprocess.CompletedProcess:
    env = {**os.environ, "TRITON_INTERPRET": "1", "DIFFCORE_KERNELS": "triton"}
    return subprocess.run(
        [sys.executable, __file__], capture_output=True, text=True, env=env, timeout=300
    )


@needs_triton
def test_triton_kernel_matches_the_reference_under_the_interpreter(interpreter_run):
    assert interpreter_run.returncode == 0, interpreter_run.stdout + interpreter_run.stderr
    expected = len(CASES) * len(OPTIONS) + 3
    assert f"triton interpreter: {expected} cases match the reference" in interpreter_run.stdout


@needs_triton
def test_training_takes_the_differentiable_reference_even_when_triton_is_forced(interpreter_run):
    assert interpreter_run.returncode == 0, interpreter_run.stdout + interpreter_run.stderr
    assert "with autograd: reference; under no_grad: triton" in interpreter_run.stdout


@needs_triton
def test_unet_inference_through_the_kernel_matches_the_reference(interpreter_run):
    assert interpreter_run.returncode == 0, interpreter_run.stdout + interpreter_run.stderr
    assert "unet: triton matches the reference" in interpreter_run.stdout


def _interpreter_checks() -> None:
    """Run as a script with TRITON_INTERPRET=1 DIFFCORE_KERNELS=triton; exits non-zero on any
    mismatch. Every result compared below was computed by the Triton kernel (the dispatch is
    asserted to pick it), against the reference called directly."""
    import warnings

    from diffcore.kernels.group_norm_silu import triton as fused

    # numpy's exp overflows to inf in sigmoid(y) for y < -88; the result (0) is still right.
    warnings.filterwarnings("ignore", "overflow encountered in exp", RuntimeWarning)

    assert type(fused._group_norm_silu_kernel).__name__ == "InterpretedFunction"
    checked = 0
    for case in CASES:
        for affine, modulation in OPTIONS:
            args = make_inputs(case, affine=affine, modulation=modulation, seed=checked)
            assert backend_for(args[0]) == "triton"
            out = group_norm_silu(*args)
            torch.testing.assert_close(out.double(), in_float64(*args), **FP32_TOL)
            if case[2] == "channels_last":
                assert out.stride() == args[0].stride(), (case, out.stride())
            checked += 1
    for case in [CASES[2], CASES[3]]:  # large offset: the statistics must not cancel
        args = make_inputs(case, affine=True, modulation=True, seed=checked, offset=100.0)
        out = group_norm_silu(*args).double()
        torch.testing.assert_close(out, in_float64(*args), rtol=0, atol=5e-5)
        checked += 1
    try:  # the reference's (torch's) refusal holds for the kernel too
        group_norm_silu(torch.zeros(1, 1, 1, 1), 1, None, None)
    except ValueError:
        checked += 1
    print(f"triton interpreter: {checked} cases match the reference")

    # Training: autograd must record the reference's graph, whatever the requested backend.
    calls = []
    original = fused.group_norm_silu
    fused.group_norm_silu = lambda *a, **k: calls.append(1) or original(*a, **k)
    x, groups, weight, bias, scale, shift = make_inputs(CASES[0], affine=True, modulation=True)
    weight.requires_grad_()
    group_norm_silu(x, groups, weight, bias, scale, shift).sum().backward()
    assert weight.grad is not None and not calls
    with torch.no_grad():
        group_norm_silu(x, groups, weight, bias, scale, shift)
    assert calls == [1]
    fused.group_norm_silu = original
    print("with autograd: reference; under no_grad: triton")

    # The U-Net at inference: every GroupNormSiLU goes through the kernel.
    net = diffcore.nn.UNet(
        diffcore.nn.UNetConfig(
            channels=(8, 16), blocks_per_level=1, norm_groups=4, head_dim=8, attention_levels=(1,)
        )
    ).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
        x, t = torch.randn(1, 3, 8, 8, generator=gen), torch.rand(1, generator=gen)
        out = net(x, t)
        with use_backend("reference"):
            want = net(x, t)
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
    print("unet: triton matches the reference")


# --- on a GPU ---------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("affine,modulation", OPTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_triton_matches_the_reference_on_gpu(monkeypatch, dtype, affine, modulation):
    monkeypatch.delenv("DIFFCORE_KERNELS", raising=False)
    big = [((4, 64, 32, 32), 32, "contiguous"), ((4, 64, 32, 32), 32, "channels_last")]
    for seed, case in enumerate(CASES + big):
        args = make_inputs(case, affine=affine, modulation=modulation, device="cuda", seed=seed)
        x, rest = args[0].to(dtype), args[1:]
        assert backend_for(x) == "triton"
        with torch.no_grad():
            out = group_norm_silu(x, *rest)
        assert out.dtype == dtype and out.shape == x.shape
        want = in_float64(x, *rest)
        if dtype == torch.float32:
            torch.testing.assert_close(out.double(), want, **FP32_TOL)
        else:
            tol = {"rtol": 2 * torch.finfo(dtype).eps, "atol": 1e-3}
            torch.testing.assert_close(out, want.to(dtype), **tol)


if __name__ == "__main__":
    _interpreter_checks()
