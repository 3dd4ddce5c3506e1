"""attention_mask_for: a bool pattern in the form each attention implementation reads."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from diffcore.nn import attention_mask_for
from diffcore.processes import block_attention_mask


class Wrapped(nn.Module):
    """A model whose config sits one level down, as under a training loop's wrapper."""

    def __init__(self, implementation: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = nn.Linear(2, 2).to(dtype)
        self.inner.config = SimpleNamespace(_attn_implementation=implementation)


def test_sdpa_gets_the_bool_pattern_and_eager_an_additive_one():
    allowed = block_attention_mask(6, 2)
    sdpa = attention_mask_for(Wrapped("sdpa", torch.float32), allowed)
    assert sdpa.dtype == torch.bool and sdpa.shape == (1, 1, 6, 6)
    assert torch.equal(sdpa[0, 0], allowed)
    eager = attention_mask_for(Wrapped("eager", torch.bfloat16), allowed[None].expand(3, -1, -1))
    assert eager.dtype == torch.bfloat16 and eager.shape == (3, 1, 6, 6)
    assert bool((eager[:, 0][allowed.expand(3, -1, -1)] == 0).all())
    assert bool((eager[:, 0][~allowed.expand(3, -1, -1)] == torch.finfo(torch.bfloat16).min).all())
    # softmax over the additive mask gives no weight where the pattern forbids
    weights = torch.softmax(torch.randn(6, 6) + eager[0, 0].float(), -1)
    assert bool((weights[~allowed] == 0).all())


def test_a_pattern_that_is_not_bool_is_refused():
    with pytest.raises(ValueError, match="bool pattern"):
        attention_mask_for(Wrapped("sdpa", torch.float32), torch.ones(4, 4))
