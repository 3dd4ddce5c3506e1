"""Every sampler in diffcore has one shape: ``sample_<algo>(model, x, schedule, /, *, generator,
callback, ...)`` — three positional-only arguments, everything else keyword-only."""

import inspect

import pytest

import diffcore.samplers as samplers

ALL = {name: getattr(samplers, name) for name in samplers.__all__ if name.startswith("sample_")}


def test_every_kind_of_sampler_is_exported():
    assert {"sample_ddpm", "sample_dpmpp_2m", "sample_smc", "sample_refine"} <= set(ALL)
    assert {"sample_masked_ancestral", "sample_confidence"} <= set(ALL)


@pytest.mark.parametrize("name", sorted(ALL))
def test_sampler_signature_has_the_common_shape(name):
    params = list(inspect.signature(ALL[name]).parameters.values())
    kinds = [p.kind for p in params]
    assert kinds[:3] == [inspect.Parameter.POSITIONAL_ONLY] * 3, name
    assert all(k is inspect.Parameter.KEYWORD_ONLY for k in kinds[3:]), name
    keywords = {p.name: p for p in params[3:]}
    for required in ("generator", "callback"):
        assert required in keywords and keywords[required].default is None, (name, required)
    assert ALL[name].__doc__, f"{name} needs a docstring"
