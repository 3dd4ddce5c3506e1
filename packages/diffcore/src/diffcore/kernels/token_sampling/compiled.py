"""Masked-token sampling through ``torch.compile``: inductor fuses the reference's tempered
log-softmax, Gumbel perturbation, argmax and confidence into row reductions (the CPU fused
path). The top-p sort stays a separate op, as in the Triton wrapper."""

from __future__ import annotations

from torch import Tensor

from diffcore.kernels._dispatch import compiled
from diffcore.kernels.token_sampling import reference


def sample_tokens(
    logits: Tensor, noise: Tensor, *, temperature: float, top_p: float | None
) -> tuple[Tensor, Tensor]:
    """The reference, compiled (temperature and top_p are constants of the compiled code)."""
    return compiled(reference.sample_tokens)(logits, noise, temperature=temperature, top_p=top_p)
