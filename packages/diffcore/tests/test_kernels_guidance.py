"""diffcore.kernels.guided_sampler_update: the sampler update with classifier-free guidance
folded in, ``denoised = lerp(uncond, cond, w)`` then ``a*x + b*denoised + c*noise + d*prev``.

The reference must combine exactly as the guidance wrapper (``ClassifierFreeGuidance``,
torch.lerp) and update exactly as ``sampler_update``; the Triton kernel is checked against it
under Triton's CPU interpreter (a subprocess running this file as a script). Tolerances:
- fp32: rtol = atol = 1e-6, as for the plain update (the kernel may contract multiply-adds
  into FMAs); guidance scales up to 7.5 make values of about 10, hence the relative part;
- fp16 / bf16: one ulp of the dtype (rtol = eps): both paths compute in fp32 and round once.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from diffcore.denoisers import guidance
from diffcore.kernels import backend_for, guided_sampler_update, sampler_update
from diffcore.kernels.sampler_update import reference

HAS_TRITON = importlib.util.find_spec("triton") is not None  # no import: see test_kernels.py
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
FP32_TOL = {"rtol": 1e-6, "atol": 1e-6}
HALF_DTYPES = (torch.float16, torch.bfloat16)
A, B, C, D = 0.9, 0.35, -0.6, 0.25
# Both of torch.lerp's forms: |w| < 0.5 uses uncond + w * diff, the others cond - diff * (1 - w).
SCALES = [0.0, 0.3, -0.2, 1.0, 4.5, 7.5]
SHAPES = [(), (1,), (1025,), (3, 5, 7), (0,), "channels_last", "transposed"]


def _tensor(case, gen: torch.Generator, dtype: torch.dtype, device: str) -> torch.Tensor:
    if case == "channels_last":
        base = torch.randn(2, 3, 4, 5, generator=gen).to(device, dtype)
        return base.contiguous(memory_format=torch.channels_last)
    if case == "transposed":
        return torch.randn(6, 9, generator=gen).to(device, dtype).t()
    return torch.randn(case, generator=gen).to(device, dtype)


def make_inputs(case, *, noise: bool, prev: bool, dtype=torch.float32, device="cpu", seed=0):
    """(x, cond, uncond, keyword arguments) for one call."""
    gen = torch.Generator().manual_seed(seed)
    x, cond, uncond = (_tensor(case, gen, dtype, device) for _ in range(3))
    kwargs = {}
    if noise:
        kwargs.update(noise=_tensor(case, gen, dtype, device), c=C)
    if prev:
        kwargs.update(prev=_tensor(case, gen, dtype, device), d=D)
    return x, cond, uncond, kwargs


# --- the reference ------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", SCALES)
def test_denoised_is_exactly_the_guidance_wrappers_combine(scale):
    x, cond, uncond, _ = make_inputs((2, 3, 8), noise=False, prev=False)

    def net(x, sigma, labels):  # row i answers cond[i % B] for label 1, uncond[i % B] for 0
        rows = torch.arange(len(labels)) % len(cond)
        return torch.stack([uncond, cond])[labels.long(), rows]

    guided = guidance(net, scale, {"labels": torch.ones(2)}, {"labels": torch.zeros(2)})
    wrapped = guided(x, torch.ones(2))
    _, denoised = guided_sampler_update(x, cond, uncond, scale, A, B)
    assert torch.equal(denoised, wrapped)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("noise,prev", [(False, False), (True, True)])
def test_update_is_exactly_the_plain_update_of_the_combine(scale, noise, prev):
    x, cond, uncond, kwargs = make_inputs((3, 5, 7), noise=noise, prev=prev)
    out, denoised = guided_sampler_update(x, cond, uncond, scale, A, B, **kwargs)
    assert torch.equal(out, sampler_update(x, torch.lerp(uncond, cond, scale), A, B, **kwargs))
    assert out.dtype == denoised.dtype == x.dtype


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_half_precision_results_are_within_one_ulp_of_the_exact_value(dtype):
    x, cond, uncond, _ = make_inputs((1000,), noise=False, prev=False, dtype=dtype)
    out, _ = guided_sampler_update(x, cond, uncond, 4.5, A, B)
    exact = A * x.double() + B * torch.lerp(uncond.double(), cond.double(), 4.5)
    torch.testing.assert_close(out, exact.to(dtype), rtol=torch.finfo(dtype).eps, atol=1e-6)


@pytest.mark.parametrize(
    "change,error,message",
    [
        ({"uncond": torch.zeros(3, 4)}, ValueError, "uncond must match x"),
        ({"cond": None}, TypeError, "cond must be a torch.Tensor, got None"),
        ({"guidance_scale": torch.tensor(2.0)}, TypeError, "guidance_scale must be a Python"),
        ({"c": 0.5}, ValueError, "noise is None"),
    ],
    ids=["shape", "missing-cond", "tensor-scale", "c-without-noise"],
)
def test_bad_inputs_are_rejected_with_a_clear_error(change, error, message):
    call = {"x": torch.zeros(3, 5), "cond": torch.zeros(3, 5), "uncond": torch.zeros(3, 5)}
    call.update({"guidance_scale": 2.0, "a": 1.0, "b": 0.5, **change})
    positional = [call.pop(k) for k in ("x", "cond", "uncond", "guidance_scale", "a", "b")]
    with pytest.raises(error, match=message):
        guided_sampler_update(*positional, **call)


# --- the Triton kernel, under the interpreter ---------------------------------------------------


@needs_triton
def test_triton_kernel_matches_the_reference_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "DIFFCORE_KERNELS": "triton"}
    done = subprocess.run(
        [sys.executable, __file__], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    expected = len(SHAPES) * len(SCALES) + 2 * len(HALF_DTYPES)
    assert f"triton interpreter: {expected} cases match the reference" in done.stdout


def _interpreter_checks() -> None:
    """Run as a script with TRITON_INTERPRET=1 DIFFCORE_KERNELS=triton; exits non-zero on any
    mismatch. The reference is swapped for a function that fails, so every result below was
    computed by the Triton kernel."""
    spec = reference.guided_sampler_update

    def refuse(*args, **kwargs):
        raise AssertionError("the dispatch ran the reference instead of the Triton kernel")

    reference.guided_sampler_update = refuse
    checked = 0
    for case in SHAPES:
        for scale in SCALES:
            noise, prev = checked % 2 == 0, checked % 3 == 0  # every combination turns up
            x, cond, uncond, kwargs = make_inputs(case, noise=noise, prev=prev, seed=checked)
            assert backend_for(x) == "triton"
            out, denoised = guided_sampler_update(x, cond, uncond, scale, A, B, **kwargs)
            want, want_denoised = spec(x, cond, uncond, scale, A, B, **kwargs)
            torch.testing.assert_close(out, want, **FP32_TOL)
            torch.testing.assert_close(denoised, want_denoised, **FP32_TOL)
            if case in ("channels_last", "transposed"):  # dense layouts are walked in place
                assert out.stride() == denoised.stride() == x.stride(), case
            checked += 1
    for dtype in HALF_DTYPES:
        for scale in (0.3, 4.5):
            x, cond, uncond, kwargs = make_inputs(
                (1025,), noise=True, prev=True, dtype=dtype, seed=checked
            )
            out, denoised = guided_sampler_update(x, cond, uncond, scale, A, B, **kwargs)
            want, want_denoised = spec(x, cond, uncond, scale, A, B, **kwargs)
            tol = {"rtol": torch.finfo(dtype).eps, "atol": 1e-6}
            assert out.dtype == denoised.dtype == dtype
            torch.testing.assert_close(out, want, **tol)
            torch.testing.assert_close(denoised, want_denoised, **tol)
            checked += 1
    print(f"triton interpreter: {checked} cases match the reference")


# --- on a GPU ---------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_triton_matches_the_reference_on_gpu(monkeypatch, dtype, scale):
    monkeypatch.delenv("DIFFCORE_KERNELS", raising=False)
    tol = FP32_TOL if dtype == torch.float32 else {"rtol": torch.finfo(dtype).eps, "atol": 1e-6}
    for seed, case in enumerate([*SHAPES, (4, 3, 64, 64)]):
        x, cond, uncond, kwargs = make_inputs(
            case, noise=True, prev=seed % 2 == 0, dtype=dtype, device="cuda", seed=seed
        )
        assert backend_for(x) == "triton"
        out, denoised = guided_sampler_update(x, cond, uncond, scale, A, B, **kwargs)
        want, want_denoised = reference.guided_sampler_update(
            x, cond, uncond, scale, A, B, **kwargs
        )
        torch.testing.assert_close(out, want, **tol)
        torch.testing.assert_close(denoised, want_denoised, **tol)


if __name__ == "__main__":
    _interpreter_checks()
