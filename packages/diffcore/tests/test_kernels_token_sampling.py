"""diffcore.kernels.sample_tokens: temperature, top-p, Gumbel-max token and its confidence.

Exact oracles for the reference: on a small vocabulary the tempered, nucleus-filtered
distribution is known in closed form, so draw frequencies are checked with a chi-square test
and confidences against it exactly (float64).

The Triton kernel runs under Triton's CPU interpreter in a subprocess (this file as a script;
TRITON_INTERPRET must be set before any Triton kernel is defined) and consumes the very same
uniforms as the reference, so its tokens must be identical. (They could differ only where two
Gumbel-perturbed scores tie to within rounding; none do for these seeds.) Confidence
tolerances: rtol = 1e-6 with float64 noise (the kernel sums in float64 but takes the
temperature as an fp32 scalar: ~1e-8 relative); rtol = 2e-5 with float32 noise (logsumexp
summed in fp32 over up to 50,000 terms); atol = 1e-7 for probabilities near 0.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys

import pytest
import torch

from diffcore.kernels import backend_for, sample_tokens, use_backend
from diffcore.kernels.token_sampling import reference

HAS_TRITON = importlib.util.find_spec("triton") is not None  # no import: see test_kernels.py
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
TOL = {torch.float64: {"rtol": 1e-6, "atol": 1e-7}, torch.float32: {"rtol": 2e-5, "atol": 1e-7}}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """p-value of Pearson's chi-square test of counts against probs (probs > 0)."""
    expected = probs * counts.sum()
    stat = ((counts - expected) ** 2 / expected).sum()
    dof = torch.tensor((len(probs) - 1) / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(dof, stat / 2))


LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -math.inf])  # the last token can never be drawn


# --- the reference against the exact distribution ----------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_draws_follow_the_tempered_softmax(temperature):
    probs = torch.softmax(LOGITS.double() / temperature, -1)
    tokens, confidence = sample_tokens(
        LOGITS.expand(20000, -1), temperature=temperature, generator=seeded(0)
    )
    counts = torch.bincount(tokens, minlength=len(LOGITS)).double()
    assert counts[-1] == 0
    assert chi_square_p(counts[:-1], probs[:-1]) > 0.01
    torch.testing.assert_close(confidence.double(), probs[tokens], rtol=1e-6, atol=0)


def test_top_p_draws_from_the_renormalized_nucleus():
    probs = torch.softmax(LOGITS.double(), -1)  # 0.56, 0.21, 0.13, 0.08, 0.03, 0
    nucleus = probs[:3] / probs[:3].sum()  # the first two hold 0.77 < 0.8: a third is needed
    tokens, confidence = sample_tokens(LOGITS.expand(20000, -1), top_p=0.8, generator=seeded(1))
    counts = torch.bincount(tokens, minlength=len(LOGITS)).double()
    assert counts[3:].sum() == 0
    assert chi_square_p(counts[:3], nucleus) > 0.01
    torch.testing.assert_close(confidence.double(), nucleus[tokens], rtol=1e-6, atol=0)


def test_top_p_keeps_the_most_likely_token_even_below_its_mass():
    tokens, confidence = sample_tokens(LOGITS.expand(50, -1), top_p=0.1, generator=seeded(2))
    assert (tokens == 0).all() and (confidence == 1).all()


def test_temperature_zero_takes_the_argmax_and_draws_no_noise():
    generator = seeded(3)
    state = generator.get_state()
    logits = torch.tensor([[0.1, 3.0, 3.0, -2.0], [5.0, 0.0, 0.0, 0.0]])
    tokens, confidence = sample_tokens(logits, temperature=0.0, generator=generator)
    assert tokens.tolist() == [1, 0]  # ties: the first maximum
    assert (confidence == 1).all()
    assert torch.equal(generator.get_state(), state)


def test_a_generator_and_its_uniforms_give_the_same_draw():
    logits = torch.randn(4, 7, 33, generator=seeded(4))
    noise = torch.rand(logits.shape, generator=seeded(5), dtype=torch.float64)
    by_noise = sample_tokens(logits, temperature=0.8, top_p=0.9, noise=noise)
    by_generator = sample_tokens(logits, temperature=0.8, top_p=0.9, generator=seeded(5))
    for a, b in zip(by_noise, by_generator, strict=True):
        assert torch.equal(a, b)
    assert by_noise[0].shape == (4, 7) and by_noise[0].dtype == torch.long
    assert by_noise[1].shape == (4, 7) and by_noise[1].dtype == torch.float32


def test_shapes_one_token_and_empty_batches():
    tokens, confidence = sample_tokens(torch.randn(9), generator=seeded(6))  # (V,) -> ()
    assert tokens.shape == () and confidence.shape == ()
    tokens, confidence = sample_tokens(torch.randn(3, 1), generator=seeded(6))  # V = 1
    assert (tokens == 0).all() and (confidence == 1).all()
    tokens, confidence = sample_tokens(torch.randn(0, 5), generator=seeded(6))
    assert tokens.shape == (0,) and confidence.shape == (0,)
    _, confidence = sample_tokens(torch.randn(2, 5, dtype=torch.float64), generator=seeded(6))
    assert confidence.dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"logits": torch.zeros(3, 0)}, ValueError, "V >= 1"),
        ({"logits": torch.zeros(3, 4, dtype=torch.long)}, TypeError, "floating"),
        ({"temperature": -0.5}, ValueError, "temperature must be >= 0"),
        ({"temperature": torch.tensor(1.0)}, TypeError, "Python float"),
        ({"top_p": 0.0}, ValueError, r"top_p must lie in \(0, 1\]"),
        ({"noise": torch.rand(3, 5)}, ValueError, "noise must match logits"),
        ({"noise": torch.rand(3, 4), "generator": seeded(0)}, ValueError, "not both"),
    ],
    ids=["empty-vocab", "integer", "negative-t", "tensor-t", "top-p", "noise-shape", "both"],
)
def test_bad_inputs_are_rejected_with_a_clear_error(kwargs, error, message):
    call = {"logits": torch.zeros(3, 4), **kwargs}
    with pytest.raises(error, match=message):
        sample_tokens(call.pop("logits"), **call)


def test_cpu_tensors_take_the_reference(monkeypatch):
    monkeypatch.delenv("DIFFCORE_KERNELS", raising=False)
    assert backend_for(torch.zeros(2, 5)) == "reference"


# --- the Triton kernel, under the interpreter ---------------------------------------------------

# (leading shape, V, layout, top_p, temperature, noise dtype, logits dtype): vocabularies of one
# token, of one block and one more, and of 50,000; -inf logits; non-unit strides along V.
CASES = [
    ((3,), 20, "contiguous", None, 1.0, torch.float64, torch.float32),
    ((2, 3), 1025, "contiguous", None, 0.7, torch.float64, torch.float32),
    ((2,), 1023, "contiguous", 0.9, 1.3, torch.float64, torch.float32),
    ((4,), 1, "contiguous", None, 1.0, torch.float64, torch.float32),
    ((), 37, "contiguous", 0.5, 1.0, torch.float64, torch.float32),
    ((0,), 7, "contiguous", None, 1.0, torch.float64, torch.float32),
    ((5,), 300, "masked", 0.95, 0.8, torch.float64, torch.float32),
    ((6,), 40, "transposed", None, 1.0, torch.float64, torch.float32),
    ((3,), 1025, "contiguous", None, 1.0, torch.float32, torch.float32),
    ((3,), 200, "contiguous", 0.8, 0.9, torch.float64, torch.bfloat16),
    ((2,), 50000, "contiguous", None, 1.0, torch.float64, torch.float32),
    ((2,), 50000, "contiguous", 0.9, 0.7, torch.float32, torch.float32),
]


def make_logits(lead, vocab, layout, dtype, seed, device="cpu") -> torch.Tensor:
    gen = seeded(seed)
    if layout == "transposed":  # stride along V is not 1
        return (3 * torch.randn(vocab, *lead, generator=gen)).to(device, dtype).movedim(0, -1)
    logits = 3 * torch.randn(*lead, vocab, generator=gen)
    if layout == "masked":  # a masked-diffusion denoiser's mask token, and a few more
        logits[..., ::7] = -math.inf
    return logits.to(device, dtype)


@pytest.fixture(scope="module")
def interpreter_run() -> subprocess.CompletedProcess:
    env = {**os.environ, "TRITON_INTERPRET": "1", "DIFFCORE_KERNELS": "triton"}
    return subprocess.run(
        [sys.executable, __file__], capture_output=True, text=True, env=env, timeout=300
    )


@needs_triton
def test_triton_kernel_matches_the_reference_under_the_interpreter(interpreter_run):
    assert interpreter_run.returncode == 0, interpreter_run.stdout + interpreter_run.stderr
    assert f"triton interpreter: {len(CASES)} cases match the reference" in interpreter_run.stdout


@needs_triton
def test_auto_on_cpu_never_imports_triton(interpreter_run):
    assert interpreter_run.returncode == 0, interpreter_run.stdout + interpreter_run.stderr
    assert "auto on cpu imported triton: False" in interpreter_run.stdout


def _interpreter_checks() -> None:
    """Run as a script with TRITON_INTERPRET=1 DIFFCORE_KERNELS=triton; exits non-zero on any
    mismatch. The reference is swapped for a function that fails, so every result below was
    computed by the Triton kernel, fed the same uniforms as the reference called directly."""
    from diffcore.samplers import sample_masked_ancestral

    # First, before anything imports triton: "auto" on CPU tensors runs the reference only.
    with use_backend("auto"):
        sample_tokens(torch.randn(3, 50), top_p=0.9, generator=seeded(0))
        logits = torch.randn(1, 6, 5)
        sample_masked_ancestral(
            lambda x, t: logits, torch.full((1, 6), 4), torch.tensor([1.0, 0.0]), mask_id=4
        )
    print("auto on cpu imported triton:", "triton" in sys.modules)

    from diffcore.kernels.token_sampling import triton as fused

    assert type(fused._sample_tokens_kernel).__name__ == "InterpretedFunction"
    spec = reference.sample_tokens

    def refuse(*args, **kwargs):
        raise AssertionError("the dispatch ran the reference instead of the Triton kernel")

    reference.sample_tokens = refuse
    for seed, (lead, vocab, layout, top_p, temperature, noise_dtype, dtype) in enumerate(CASES):
        logits = make_logits(lead, vocab, layout, dtype, seed)
        assert backend_for(logits) == "triton"
        noise = torch.rand(logits.shape, generator=seeded(100 + seed), dtype=noise_dtype)
        if noise_dtype == torch.float64:  # the op draws the same uniforms from the same seed
            got = sample_tokens(
                logits, temperature=temperature, top_p=top_p, generator=seeded(100 + seed)
            )
        else:
            got = sample_tokens(logits, temperature=temperature, top_p=top_p, noise=noise)
        want = spec(logits, noise, temperature=temperature, top_p=top_p)
        case = (lead, vocab, layout, top_p, temperature, noise_dtype, dtype)
        assert got[0].shape == lead and got[0].dtype == torch.long, case
        assert torch.equal(got[0], want[0]), (case, got[0], want[0])
        torch.testing.assert_close(got[1], want[1], **TOL[noise_dtype], msg=str(case))
    print(f"triton interpreter: {len(CASES)} cases match the reference")


# --- on a GPU ---------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_triton_matches_the_reference_on_gpu(monkeypatch, dtype):
    monkeypatch.delenv("DIFFCORE_KERNELS", raising=False)
    for seed, (lead, vocab, layout, top_p, temperature, noise_dtype, _) in enumerate(CASES):
        logits = make_logits((64, *lead), vocab, layout, dtype, seed, device="cuda")
        assert backend_for(logits) == "triton"
        gen = torch.Generator(device="cuda")
        noise = torch.rand(
            logits.shape, generator=gen.manual_seed(seed), device="cuda", dtype=noise_dtype
        )
        got = sample_tokens(logits, temperature=temperature, top_p=top_p, noise=noise)
        want = reference.sample_tokens(logits, noise, temperature=temperature, top_p=top_p)
        assert torch.equal(got[0], want[0])
        torch.testing.assert_close(got[1], want[1], **TOL[noise_dtype])


if __name__ == "__main__":
    _interpreter_checks()
