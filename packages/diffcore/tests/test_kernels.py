"""diffcore.kernels: the backend dispatch and the fused sampler update.

The oracle for the sampler update is the formula ``a*x + b*denoised + c*noise + d*prev``
evaluated in float64 from the same inputs. Tolerances:
- fp32 results: rtol = atol = 1e-6 (a few fp32 ulps for O(1) values; the kernels may contract
  multiply-adds into FMAs or sum in another order);
- fp16 / bf16 results: one ulp of the storage dtype (rtol = its eps), because both paths sum in
  fp32 and round once, and a last-bit fp32 difference can only move a value that sits on a
  rounding boundary by one step;
- float64 (reference only): rtol = atol = 1e-15.

The Triton kernel runs here under Triton's CPU interpreter in a subprocess (this file, run as a
script), because TRITON_INTERPRET must be set before any Triton kernel is defined, and other
test files may already have imported triton in this process.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from diffcore.kernels import (
    BACKENDS,
    backend_for,
    requested_backend,
    sampler_update,
    triton_available,
    use_backend,
)
from diffcore.kernels.sampler_update import reference

SHAPES = [(), (1,), (7,), (1023,), (1025,), (3, 5, 7), (2, 1, 28, 28), (0,)]
LAYOUTS = ["strided", "transposed", "channels_last", "broadcast"]  # views, not fresh tensors
CASES = SHAPES + LAYOUTS
OPTIONAL = [(False, False), (True, False), (False, True), (True, True)]  # (noise?, prev?)
A, B, C, D = 0.9, 0.35, -0.6, 0.25
FP32_TOL = {"rtol": 1e-6, "atol": 1e-6}
HALF_DTYPES = (torch.float16, torch.bfloat16)


def half_tolerance(dtype: torch.dtype) -> dict[str, float]:
    """One ulp of ``dtype`` (|ulp(v)| <= eps * |v| for normal v)."""
    return {"rtol": torch.finfo(dtype).eps, "atol": 1e-6}


# find_spec, not an import: collecting these tests must not import triton into this process.
HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")


def _tensor(case, gen: torch.Generator, dtype: torch.dtype, device: str) -> torch.Tensor:
    """A random tensor with the shape or memory layout ``case`` names (views built on the
    target device, so moving them cannot make them contiguous)."""
    if case == "strided":  # gaps between elements: must be copied before a flat walk
        return torch.randn(5, 8, generator=gen).to(device, dtype)[:, ::2]
    if case == "transposed":  # dense but not contiguous
        return torch.randn(6, 9, generator=gen).to(device, dtype).t()
    if case == "channels_last":
        base = torch.randn(2, 3, 4, 5, generator=gen).to(device, dtype)
        return base.contiguous(memory_format=torch.channels_last)
    if case == "broadcast":  # stride 0: elements overlap in memory
        return torch.randn(1, 7, generator=gen).to(device, dtype).expand(3, 7)
    return torch.randn(case, generator=gen).to(device, dtype)


def make_inputs(case, *, noise: bool, prev: bool, dtype=torch.float32, device="cpu", seed=0):
    """(x, denoised, keyword arguments) for one call of the sampler update."""
    gen = torch.Generator().manual_seed(seed)
    x, denoised = _tensor(case, gen, dtype, device), _tensor(case, gen, dtype, device)
    kwargs = {}
    if noise:
        kwargs.update(noise=_tensor(case, gen, dtype, device), c=C)
    if prev:
        kwargs.update(prev=_tensor(case, gen, dtype, device), d=D)
    return x, denoised, kwargs


def formula(x, denoised, a, b, *, noise=None, c=0.0, prev=None, d=0.0) -> torch.Tensor:
    """The spec in float64: the exactly rounded value of the update, before storage rounding."""
    out = a * x.double() + b * denoised.double()
    if noise is not None:
        out = out + c * noise.double()
    if prev is not None:
        out = out + d * prev.double()
    return out


def small_steps_from_one(dtype: torch.dtype, device: str = "cpu"):
    """Inputs whose update is 1 + 0.4 eps + 0.4 eps + 0.4 eps (eps of ``dtype``). Rounding to
    ``dtype`` after every term gives exactly 1; summing in fp32 and rounding once gives exactly
    1 + eps, whether the final rounding is to nearest or (Triton's interpreter) toward zero."""
    small = 0.4 * torch.finfo(dtype).eps
    ones = torch.ones(4, dtype=dtype, device=device)
    args = (ones, ones.clone(), 1.0, small)
    return args, {"noise": ones.clone(), "c": small, "prev": ones.clone(), "d": small}


# --- the reference (the spec, and the CPU path of the dispatch) ---------------------------------


@pytest.mark.parametrize("has_noise,has_prev", OPTIONAL)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_reference_matches_the_formula_for_every_shape_and_layout(case, has_noise, has_prev):
    x, denoised, kwargs = make_inputs(case, noise=has_noise, prev=has_prev)
    out = sampler_update(x, denoised, A, B, **kwargs)
    assert out.shape == x.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, formula(x, denoised, A, B, **kwargs).float(), **FP32_TOL)


def test_float64_inputs_are_summed_in_float64():
    x, denoised, kwargs = make_inputs((1000,), noise=True, prev=True, dtype=torch.float64)
    out = sampler_update(x, denoised, A, B, **kwargs)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, formula(x, denoised, A, B, **kwargs), rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_half_precision_inputs_are_summed_in_fp32(dtype):
    args, kwargs = small_steps_from_one(dtype)
    x, denoised, a, b = args
    # The naive expression in half precision rounds after every term and loses all three.
    naive = x * a + denoised * b + kwargs["noise"] * kwargs["c"] + kwargs["prev"] * kwargs["d"]
    assert torch.all(naive == 1)
    out = sampler_update(*args, **kwargs)
    assert out.dtype == dtype
    assert torch.all(out == 1 + torch.finfo(dtype).eps)


def test_the_update_leaves_its_inputs_untouched():
    x, denoised, kwargs = make_inputs((3, 5, 7), noise=True, prev=True)
    before = [t.clone() for t in (x, denoised, kwargs["noise"], kwargs["prev"])]
    out = sampler_update(x, denoised, A, B, **kwargs)
    assert out.data_ptr() != x.data_ptr()
    for t, saved in zip((x, denoised, kwargs["noise"], kwargs["prev"]), before, strict=True):
        assert torch.equal(t, saved)


@pytest.mark.parametrize(
    "change,error,message",
    [
        ({"denoised": torch.zeros(3, 4)}, ValueError, "denoised must match x"),
        ({"noise": torch.zeros(3, 5, dtype=torch.float64), "c": 1.0}, ValueError, "noise must"),
        ({"prev": torch.zeros(3, 5, device="meta"), "d": 1.0}, ValueError, "prev must match x"),
        ({"x": torch.zeros(3, 5, dtype=torch.long)}, TypeError, "floating dtype"),
        ({"noise": [[0.0] * 5] * 3, "c": 1.0}, TypeError, "noise must be a torch.Tensor"),
        ({"a": torch.tensor(0.5)}, TypeError, "a must be a Python float"),
        ({"c": 0.5}, ValueError, "noise is None"),
        ({"d": -0.1}, ValueError, "prev is None"),
    ],
    ids=[
        "shape",
        "dtype",
        "device",
        "integer-x",
        "list-noise",
        "tensor-coefficient",
        "c-without-noise",
        "d-without-prev",
    ],
)
def test_mismatched_inputs_are_rejected_with_a_clear_error(change, error, message):
    call = {"x": torch.zeros(3, 5), "denoised": torch.zeros(3, 5), "a": 1.0, "b": 0.5}
    call.update(change)
    x, denoised, a, b = (call.pop(k) for k in ("x", "denoised", "a", "b"))
    with pytest.raises(error, match=message):
        sampler_update(x, denoised, a, b, **call)


# --- dispatch -------------------------------------------------------------------------------------

# backend_for only looks at .is_cuda and .device, so a stand-in lets the CUDA branch of "auto"
# be checked on a machine without a GPU.
FAKE_CUDA_TENSOR = SimpleNamespace(is_cuda=True, device=torch.device("cuda", 0))


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("DIFFCORE_KERNELS", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    return monkeypatch


@pytest.fixture
def fresh_triton_probe():
    """triton_available() caches its answer; forget it before and after a test that fakes it."""
    triton_available.cache_clear()
    yield
    triton_available.cache_clear()


class _BrokenTritonFinder(importlib.abc.MetaPathFinder):
    """Makes ``import triton`` fail the way a broken install does (not with ImportError)."""

    def find_spec(self, name, path=None, target=None):
        if name == "triton":
            raise OSError("libcuda.so.1: cannot open shared object file")
        return None


@pytest.fixture(params=["missing", "broken"])
def triton_import_fails(request, clean_env, fresh_triton_probe):
    if request.param == "missing":
        clean_env.setitem(sys.modules, "triton", None)  # `import triton` raises ImportError
    else:
        clean_env.delitem(sys.modules, "triton", raising=False)
        clean_env.setattr(sys, "meta_path", [_BrokenTritonFinder(), *sys.meta_path])


def test_default_is_auto_and_cpu_tensors_get_the_reference(clean_env):
    assert requested_backend() == "auto"
    assert backend_for(torch.zeros(3)) == "reference"


@needs_triton
def test_auto_picks_triton_for_cuda_tensors_when_triton_imports(clean_env):
    assert backend_for(FAKE_CUDA_TENSOR) == "triton"


def test_auto_falls_back_to_the_reference_when_triton_cannot_import(triton_import_fails):
    assert not triton_available()
    assert backend_for(FAKE_CUDA_TENSOR) == "reference"
    x, denoised, kwargs = make_inputs((7,), noise=True, prev=True)
    out = sampler_update(x, denoised, A, B, **kwargs)
    torch.testing.assert_close(out, reference.sampler_update(x, denoised, A, B, **kwargs))


def test_forcing_triton_when_it_cannot_import_is_a_clear_error(triton_import_fails):
    with use_backend("triton"), pytest.raises(RuntimeError, match="triton does not import"):
        backend_for(FAKE_CUDA_TENSOR)


@pytest.mark.parametrize("value", ["reference", "triton", "auto", " Reference ", ""])
def test_the_environment_variable_requests_a_backend(clean_env, value):
    clean_env.setenv("DIFFCORE_KERNELS", value)
    assert requested_backend() == (value.strip().lower() or "auto")


def test_the_environment_variable_can_force_the_reference_on_cuda(clean_env):
    clean_env.setenv("DIFFCORE_KERNELS", "reference")
    assert backend_for(FAKE_CUDA_TENSOR) == "reference"


def test_use_backend_overrides_the_environment_nests_and_restores(clean_env):
    clean_env.setenv("DIFFCORE_KERNELS", "triton")
    with use_backend("reference"):
        assert backend_for(FAKE_CUDA_TENSOR) == "reference"
        with use_backend("auto"):
            assert requested_backend() == "auto"
            assert backend_for(torch.zeros(2)) == "reference"
        assert requested_backend() == "reference"
    assert requested_backend() == "triton"
    with pytest.raises(KeyError), use_backend("reference"):
        raise KeyError("an error inside the block must still restore the outer choice")
    assert requested_backend() == "triton"


def test_unknown_backend_names_are_rejected(clean_env):
    with pytest.raises(ValueError, match="one of auto, reference, triton"), use_backend("cuda"):
        pass
    clean_env.setenv("DIFFCORE_KERNELS", "cuda")
    with pytest.raises(ValueError, match="DIFFCORE_KERNELS must be one of"):
        sampler_update(torch.zeros(2), torch.zeros(2), 1.0, 1.0)
    assert set(BACKENDS) == {"auto", "reference", "triton", "compiled", "cpp"}


@needs_triton
@pytest.mark.parametrize("how", ["use_backend", "environment"])
def test_forcing_triton_on_cpu_without_the_interpreter_is_a_clear_error(clean_env, how):
    x = torch.zeros(4)
    if how == "environment":
        clean_env.setenv("DIFFCORE_KERNELS", "triton")
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
            sampler_update(x, x, 1.0, 1.0)
    else:
        with use_backend("triton"), pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
            sampler_update(x, x, 1.0, 1.0)


@needs_triton
def test_the_interpreter_only_covers_cpu_tensors(clean_env):
    clean_env.setenv("TRITON_INTERPRET", "1")
    with use_backend("triton"):
        assert backend_for(torch.zeros(2)) == "triton"
        with pytest.raises(RuntimeError, match="on meta"):
            backend_for(torch.zeros(2, device="meta"))


def test_importing_and_using_diffcore_on_cpu_never_imports_triton(clean_env):
    script = (
        "import sys, torch, diffcore, diffcore.kernels, diffcore.samplers\n"
        "x = torch.ones(3)\n"
        "diffcore.kernels.sampler_update(x, x, 1.0, 1.0)\n"
        "print('triton imported:', 'triton' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr
    assert "triton imported: False" in done.stdout


# --- the Triton kernel ------------------------------------------------------------------------


@needs_triton
def test_triton_kernel_matches_the_reference_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "DIFFCORE_KERNELS": "triton"}
    done = subprocess.run(
        [sys.executable, __file__], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    expected = len(CASES) * len(OPTIONAL) + 3 * len(HALF_DTYPES)
    assert f"triton interpreter: {expected} cases match the reference" in done.stdout


def _interpreter_checks() -> None:
    """Run as a script with TRITON_INTERPRET=1 DIFFCORE_KERNELS=triton; exits non-zero on any
    mismatch. The reference is swapped for a function that fails, so every result below was
    computed by the Triton kernel, and the formula is checked through the dispatch users call."""
    from diffcore.kernels.sampler_update import triton as fused

    assert type(fused._sampler_update_kernel).__name__ == "InterpretedFunction"
    spec = reference.sampler_update

    def refuse(*args, **kwargs):
        raise AssertionError("the dispatch ran the reference instead of the Triton kernel")

    reference.sampler_update = refuse
    checked = 0
    for case in CASES:
        for has_noise, has_prev in OPTIONAL:
            x, denoised, kwargs = make_inputs(case, noise=has_noise, prev=has_prev, seed=checked)
            assert backend_for(x) == "triton"
            out = sampler_update(x, denoised, A, B, **kwargs)
            torch.testing.assert_close(out, spec(x, denoised, A, B, **kwargs), **FP32_TOL)
            torch.testing.assert_close(
                out, formula(x, denoised, A, B, **kwargs).float(), **FP32_TOL
            )
            if case in ("transposed", "channels_last"):  # dense layouts are walked without a copy
                assert out.stride() == x.stride(), (case, out.stride(), x.stride())
            checked += 1
    for dtype in HALF_DTYPES:
        # The interpreter converts fp32 -> bf16 by truncation (a GPU rounds to nearest), so
        # half-precision results are held to one ulp of their dtype, not to exact equality.
        for case in [(1025,), "channels_last"]:
            x, denoised, kwargs = make_inputs(
                case, noise=True, prev=True, dtype=dtype, seed=checked
            )
            out = sampler_update(x, denoised, A, B, **kwargs)
            assert out.dtype == dtype
            want = spec(x, denoised, A, B, **kwargs)
            torch.testing.assert_close(out, want, **half_tolerance(dtype))
            checked += 1
        args, kwargs = small_steps_from_one(dtype)
        out = sampler_update(*args, **kwargs)
        assert out.dtype == dtype and torch.all(out == 1 + torch.finfo(dtype).eps), out
        checked += 1
    print(f"triton interpreter: {checked} cases match the reference")


# --- the C++ loop (backend "cpp") --------------------------------------------------------------


@pytest.fixture(scope="module")
def cpp_built():
    """The C++ extension, built once for the module (tens of seconds the first time on a
    machine, then torch's cache); skips where no compiler or ninja can build it."""
    from diffcore.kernels.sampler_update import cpp

    if not cpp.available():
        pytest.skip("the C++ sampler update could not be built here (no compiler or ninja?)")
    return cpp


def test_cpp_is_only_chosen_for_cpu_tensors(clean_env):
    with use_backend("cpp"):
        assert backend_for(torch.zeros(2)) == "cpp"
        assert backend_for(torch.zeros(2, device="meta")) == "reference"  # as auto would


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_cpp_loop_matches_the_reference_on_every_shape_and_layout(clean_env, cpp_built, dtype):
    from diffcore.kernels.sampler_update import cpp

    calls = []
    loop = cpp._module().update

    def counted(*args):
        calls.append(1)
        return loop(*args)

    clean_env.setattr(cpp._module(), "update", counted, raising=False)
    looped = 0
    for i, case in enumerate(CASES):
        for has_noise, has_prev in OPTIONAL:
            x, denoised, kwargs = make_inputs(
                case, noise=has_noise, prev=has_prev, dtype=dtype, seed=i
            )
            before = len(calls)
            with use_backend("cpp"):
                out = sampler_update(x, denoised, A, B, **kwargs)
            want = reference.sampler_update(x, denoised, A, B, **kwargs)
            assert out.dtype == dtype and out.shape == want.shape
            torch.testing.assert_close(out, want, **FP32_TOL)
            torch.testing.assert_close(
                out, formula(x, denoised, A, B, **kwargs).to(dtype), **FP32_TOL
            )
            if len(calls) > before:
                looped += 1
                assert out.stride() == x.stride()  # the result keeps x's dense layout
    # contiguous shapes (incl. empty and one element) and channels-last go through the loop;
    # strided, transposed and broadcast views take the reference
    assert looped == (len(SHAPES) + 1) * len(OPTIONAL)


@pytest.mark.slow
def test_cpp_guided_update_matches_the_reference(clean_env, cpp_built):
    from diffcore.kernels import guided_sampler_update

    gen = torch.Generator().manual_seed(0)
    x, cond, uncond, noise, prev = (torch.randn(3, 1025, generator=gen) for _ in range(5))
    for scale in (0.0, 0.3, 1.0, 4.5):
        with use_backend("cpp"):
            out, denoised = guided_sampler_update(
                x, cond, uncond, scale, A, B, noise=noise, c=C, prev=prev, d=D
            )
        want, want_denoised = reference.guided_sampler_update(
            x, cond, uncond, scale, A, B, noise=noise, c=C, prev=prev, d=D
        )
        torch.testing.assert_close(denoised, want_denoised, rtol=0, atol=0)  # lerp's rounding
        torch.testing.assert_close(out, want, **FP32_TOL)


def test_cpp_backend_takes_the_reference_for_half_precision(clean_env):
    x, denoised, kwargs = make_inputs((7, 5), noise=True, prev=True, dtype=torch.bfloat16)
    with use_backend("cpp"):
        out = sampler_update(x, denoised, A, B, **kwargs)
    assert torch.equal(out, reference.sampler_update(x, denoised, A, B, **kwargs))


# --- on a GPU ---------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("has_noise,has_prev", OPTIONAL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_triton_matches_the_reference_on_gpu(clean_env, dtype, has_noise, has_prev):
    tol = FP32_TOL if dtype == torch.float32 else half_tolerance(dtype)
    for seed, case in enumerate([*CASES, (4, 3, 64, 64)]):
        x, denoised, kwargs = make_inputs(
            case, noise=has_noise, prev=has_prev, dtype=dtype, device="cuda", seed=seed
        )
        assert backend_for(x) == "triton"
        out = sampler_update(x, denoised, A, B, **kwargs)
        assert out.dtype == dtype and out.device == x.device
        want = reference.sampler_update(x, denoised, A, B, **kwargs)
        torch.testing.assert_close(out, want, **tol)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_triton_sums_half_precision_inputs_in_fp32_on_gpu(clean_env, dtype):
    args, kwargs = small_steps_from_one(dtype, device="cuda")
    assert backend_for(args[0]) == "triton"
    out = sampler_update(*args, **kwargs)
    assert torch.all(out == 1 + torch.finfo(dtype).eps)


if __name__ == "__main__":
    _interpreter_checks()
